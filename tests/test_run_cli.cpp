// `dendro run` through the CLI: streamed output and the closing stats line, determinism by seed, and one
// clear error line with a non-zero exit for every kind of bad input (model file, prompt, flag values).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "gguf.h"
#include "random_model_file.h"
#include "run_command.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::CommandResult;
using test::run_command;
using test::shell_quote;

class RunCliTest : public ::testing::Test {
protected:
    test::TempModelFile model{test::tiny_hparams_byte_vocab(), GgmlType::F16, /*seed=*/11, /*tied=*/false,
                              test::byte_tokenizer_options()};
    test::TempDir dir;

    static CommandResult dendro(const std::string& args) { return run_command(shell_quote(DENDRO_EXE) + " " + args); }
    CommandResult run(const std::string& args) const { return dendro("run -m " + shell_quote(model.path()) + " " + args); }

    // A failed command: non-zero exit, nothing on stdout, exactly one line on stderr containing `needle`.
    static void expect_one_line_error(const CommandResult& r, const std::string& needle) {
        EXPECT_NE(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, "");
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
    }
};

TEST_F(RunCliTest, StreamsThePromptThenTheContinuationAndReportsSpeed) {
    const CommandResult r = run("-p 'Once upon' -n 12 --temp 0 -t 1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("Once upon", 0), 0u) << r.out;
    EXPECT_GT(r.out.size(), std::string("Once upon\n").size());
    EXPECT_NE(r.err.find("prompt 9 tok"), std::string::npos) << r.err;  // one token per byte
    EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("GB/s of weights"), std::string::npos) << r.err;
}

TEST_F(RunCliTest, SameSeedSameTextAndGreedyIgnoresTheSeed) {
    const CommandResult a = run("-p 'abc' -n 24 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 -s 42 -t 1");
    const CommandResult b = run("-p 'abc' -n 24 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 -s 42 -t 1");
    const CommandResult c = run("-p 'abc' -n 24 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 -s 43 -t 1");
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out);
    EXPECT_NE(a.out, c.out) << "different seeds gave the same 24 tokens at temperature 1.5";
    const CommandResult g1 = run("-p 'abc' -n 24 --temp 0 -s 1 -t 1");
    const CommandResult g2 = run("-p 'abc' -n 24 --temp 0 -s 2 -t 2");
    EXPECT_EQ(g1.out, g2.out);
}

TEST_F(RunCliTest, PromptFromAFile) {
    const std::string path = dir.file("prompt.txt");
    std::ofstream(path) << "abc";
    const CommandResult from_file = run("-f " + shell_quote(path) + " -n 8 --temp 0 -t 1");
    const CommandResult inline_prompt = run("-p abc -n 8 --temp 0 -t 1");
    ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
    EXPECT_EQ(from_file.out, inline_prompt.out);
}

TEST_F(RunCliTest, BadModelFiles) {
    expect_one_line_error(dendro("run -m " + shell_quote(dir.file("missing.gguf")) + " -p hi"), "missing.gguf");
    const std::string text_file = dir.file("notes.txt");
    std::ofstream(text_file) << "these are not the weights you are looking for";
    expect_one_line_error(dendro("run -m " + shell_quote(text_file) + " -p hi"), "not a GGUF file");
    expect_one_line_error(dendro("run -m " + shell_quote(dir.path()) + " -p hi"), dir.path());

    GgufWriter writer;
    writer.set("general.architecture", GgufValue::string("llama"));
    const std::string llama = dir.file("llama.gguf");
    writer.write(llama);
    expect_one_line_error(dendro("run -m " + shell_quote(llama) + " -p hi"), "llama");

    const std::string truncated = dir.file("truncated.gguf");
    {
        std::ifstream in(model.path(), std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    expect_one_line_error(dendro("run -m " + shell_quote(truncated) + " -p hi"), "truncated.gguf");
}

TEST_F(RunCliTest, BadPrompts) {
    expect_one_line_error(run("-p ''"), "prompt is empty");
    expect_one_line_error(run(""), "prompt is empty");
    expect_one_line_error(run("-f " + shell_quote(dir.file("none.txt"))), "none.txt");
    const std::string empty_file = dir.file("empty.txt");
    std::ofstream(empty_file).flush();
    expect_one_line_error(run("-f " + shell_quote(empty_file)), "prompt is empty");
    expect_one_line_error(run("-p a -f " + shell_quote(empty_file)), "excludes");
}

TEST_F(RunCliTest, BadFlagValues) {
    expect_one_line_error(run("-p a --temp -1"), "temp");
    expect_one_line_error(run("-p a --top-k -3"), "top-k");
    expect_one_line_error(run("-p a --top-p 0"), "top-p");
    expect_one_line_error(run("-p a --top-p 1.5"), "top-p");
    expect_one_line_error(run("-p a --min-p 2"), "min-p");
    expect_one_line_error(run("-p a --repeat-penalty 0"), "repeat-penalty");
    expect_one_line_error(run("-p a --repeat-last-n -1"), "repeat-last-n");
    expect_one_line_error(run("-p a -n -5"), "-n");
    expect_one_line_error(run("-p a -t -1"), "-t");
    expect_one_line_error(run("-p a --device tpu"), "tpu");
    expect_one_line_error(run("-p a --temp warm"), "warm");
    expect_one_line_error(run("-p a --bogus"), "bogus");
}

}  // namespace
}  // namespace dendro
