// Runs a shell command for CLI tests and captures its exit status, stdout and stderr separately.
#pragma once

#include <string>

namespace dendro::test {

struct CommandResult {
    int exit_code = -1;  // the process exit status, or -1 when it did not exit normally
    std::string out;
    std::string err;
};

CommandResult run_command(const std::string& command);

// Quotes `word` for the shell.
std::string shell_quote(const std::string& word);

}  // namespace dendro::test
