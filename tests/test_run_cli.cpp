// `dendro run` through the CLI: streamed output and the closing stats line, determinism by seed, and one
// clear error line with a non-zero exit for every kind of bad input (model file, prompt, flag values).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/gguf.h"
#include "random_model_file.h"
#include "run_command.h"
#include "temp_dir.h"
#include "tokenizer/unicode_utf8.h"

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
    expect_one_line_error(run("-p a -t 100000"), "-t");
    expect_one_line_error(run("-p a --device tpu"), "tpu");
    expect_one_line_error(run("-p a --temp warm"), "warm");
    expect_one_line_error(run("-p a --bogus"), "bogus");
}

// CLI11 alone takes -1 and 2^64 as 2^64 - 1; the seed is range-checked instead.
TEST_F(RunCliTest, SeedOutsideUint64IsAnError) {
    expect_one_line_error(run("-p a -n 1 -s -1"), "--seed");
    expect_one_line_error(run("-p a -n 1 -s 18446744073709551616"), "--seed");
    expect_one_line_error(run("-p a -n 1 -s 12x"), "--seed");
    const CommandResult max = run("-p a -n 1 -t 1 -s 18446744073709551615");
    ASSERT_EQ(max.exit_code, 0) << max.err;
    EXPECT_NE(max.err.find("seed 18446744073709551615"), std::string::npos) << max.err;
}

// After a full restore no prompt token was computed: the line reports the time to the first token (lookup and
// restore included) and no meaningless rate.
TEST_F(RunCliTest, FullRestoreReportsTimeToFirstToken) {
    const std::string cache = dir.file("prompt.cache");
    const CommandResult first = run("-p 'Once upon a time' -n 2 --temp 0 -t 1 --prompt-cache " + shell_quote(cache));
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_NE(first.err.find("prompt 16 tok ("), std::string::npos) << first.err;
    EXPECT_NE(first.err.find("tok/s), first token after "), std::string::npos) << first.err;
    const CommandResult second = run("-p 'Once upon a time' -n 2 --temp 0 -t 1 --prompt-cache " + shell_quote(cache));
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_NE(second.err.find("prompt 16 tok (16 restored, 0 computed), first token after "), std::string::npos)
        << second.err;
    EXPECT_EQ(second.err.find("0.0 tok/s"), std::string::npos) << second.err;
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
    std::vector<nlohmann::json> lines;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

// With --logprobs, stdout is JSON lines only: the prompt tokens, then the generated ones. A token whose bytes
// are not UTF-8 on their own (here each byte of "é" is a token) has U+FFFD in "text" and its bytes listed.
TEST_F(RunCliTest, LogprobsPrintsOneJsonLinePerToken) {
    const std::string prompt = dir.file("prompt.txt");
    std::ofstream(prompt, std::ios::binary) << "a\xC3\xA9";
    const CommandResult r = run("-f " + shell_quote(prompt) + " -n 3 --temp 0 -t 1 --logprobs 4");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::vector<nlohmann::json> lines = json_lines(r.out);
    ASSERT_GE(lines.size(), 4u) << r.out;  // 3 prompt bytes and at least one generated token
    EXPECT_LE(lines.size(), 6u) << r.out;
    EXPECT_NE(r.err.find("first token after"), std::string::npos) << r.err;  // stats still on stderr
    EXPECT_TRUE(lines[0].at("logprob").is_null());
    EXPECT_EQ(lines[0].at("text"), "a");
    EXPECT_FALSE(lines[0].contains("bytes"));
    EXPECT_EQ(lines[1].at("text"), std::string(utf8::kReplacementCharacter));
    EXPECT_EQ(lines[1].at("bytes"), nlohmann::json::array({0xC3}));
    EXPECT_EQ(lines[2].at("bytes"), nlohmann::json::array({0xA9}));
    for (size_t pos = 0; pos < lines.size(); ++pos) {
        const nlohmann::json& line = lines[pos];
        EXPECT_EQ(line.at("pos"), pos);
        EXPECT_EQ(line.at("source"), pos < 3 ? "prompt" : "generated");
        if (pos == 0) continue;
        const double logprob = line.at("logprob");
        EXPECT_LE(logprob, 0.0);
        const nlohmann::json& top = line.at("top");
        ASSERT_EQ(top.size(), 4u);
        for (size_t k = 1; k < top.size(); ++k) EXPECT_LE(top[k].at("logprob"), top[k - 1].at("logprob"));
        EXPECT_LE(logprob, top[0].at("logprob").get<double>());
        if (pos >= 3) EXPECT_EQ(top[0].at("id"), line.at("id")) << "--temp 0 is argmax";
    }
}

TEST_F(RunCliTest, BadLogprobsRequests) {
    expect_one_line_error(run("-p a --logprobs -1"), "--logprobs");
    expect_one_line_error(run("-p a --logprobs 1000000"), "vocabulary");
    // Restored prompt tokens have no logits to report.
    expect_one_line_error(run("-p a --logprobs 2 --cache-dir " + shell_quote(dir.file("c"))), "--logprobs");
    expect_one_line_error(run("-p a --logprobs 2 --prompt-cache " + shell_quote(dir.file("p"))), "--logprobs");
}

}  // namespace
}  // namespace dendro
