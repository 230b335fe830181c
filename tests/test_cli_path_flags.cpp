// Every path flag of every subcommand refuses an empty value with one error line naming the flag: '' would
// otherwise silently mean "not given" (the bundled model, no cache, a temporary file...).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "run_command.h"

namespace dendro {
namespace {

TEST(CliPathFlags, EmptyValueIsOneErrorLineNamingTheFlag) {
    struct Case {
        const char* args;
        const char* flag;
    };
    const Case cases[] = {
        {"run -m '' -p hi", "--model"},
        {"run -f ''", "--file"},
        {"run -p hi --prompt-cache ''", "--prompt-cache"},
        {"run -p hi --cache-dir ''", "--cache-dir"},
        {"tokenize -m '' -p hi", "--model"},
        {"tokenize -f ''", "--file"},
        {"perplexity -m '' -f x.txt", "--model"},
        {"perplexity -f ''", "--file"},
        {"info ''", "FILE"},
        {"convert '' -o out.gguf", "HF_DIR"},
        {"convert dir -o ''", "--output"},
        {"convert dir -o out.gguf --vocab ''", "--vocab"},
        {"bench -m '' --device cpu", "--model"},
        {"bench --random-shape 130m --random-out '' --device cpu", "--random-out"},
        {"cache ls ''", "DIR"},
        {"cache info ''", "DIR"},
        {"cache rm '' abc", "DIR"},
        {"cache clear ''", "DIR"},
        {"cache bench '' -m model.gguf", "DIR"},
        {"cache bench dir -m ''", "--model"},
    };
    for (const Case& c : cases) {
        const test::CommandResult r = test::run_command(test::shell_quote(DENDRO_EXE) + " " + c.args);
        EXPECT_NE(r.exit_code, 0) << c.args;
        EXPECT_EQ(r.out, "") << c.args;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << ": " << r.err;
        EXPECT_NE(r.err.find(std::string(c.flag) + ": must not be empty"), std::string::npos) << c.args << ": " << r.err;
    }
}

}  // namespace
}  // namespace dendro
