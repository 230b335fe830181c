#include "run_command.h"

#include <sys/wait.h>

#include <cstdlib>
#include <iterator>
#include <fstream>

#include "temp_dir.h"

namespace dendro::test {

std::string shell_quote(const std::string& word) {
    std::string quoted = "'";
    for (const char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

CommandResult run_command(const std::string& command) {
    const TempDir capture;
    const std::string out_path = capture.file("stdout");
    const std::string err_path = capture.file("stderr");
    const std::string line = "( " + command + " ) >" + shell_quote(out_path) + " 2>" + shell_quote(err_path);
    const int status = std::system(line.c_str());
    CommandResult result;
    result.exit_code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    const auto slurp = [](const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    };
    result.out = slurp(out_path);
    result.err = slurp(err_path);
    return result;
}

}  // namespace dendro::test
