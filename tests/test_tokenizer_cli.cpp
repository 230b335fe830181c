// `dendro tokenize`: ids on one line for -p and -f, BOS flags, and one clear error line with a non-zero exit
// for bad input.
#include <gtest/gtest.h>

#include <fstream>

#include "run_command.h"
#include "temp_dir.h"
#include "tokenizer_gguf.h"

namespace dendro {
namespace {

using test::run_command;
using test::shell_quote;

std::string joined(const std::vector<int32_t>& ids) {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    return line + "\n";
}

class TokenizeCommand : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        test::write_vocab_gguf(dir_->file("neox.gguf"), test::tokenizer_dir(test::kNeoxTokenizer),
                               test::kNeoxPaddedVocab);
        test::write_vocab_gguf(dir_->file("mistral.gguf"), test::tokenizer_dir(test::kMistralTokenizer),
                               test::kMistralVocab);
    }
    static void TearDownTestSuite() { delete dir_; }

    static test::CommandResult tokenize(const std::string& args) {
        return run_command(shell_quote(DENDRO_EXE) + " tokenize " + args);
    }
    static std::string model(const char* name) { return "-m " + shell_quote(dir_->file(name)); }

    static test::TempDir* dir_;
};
test::TempDir* TokenizeCommand::dir_ = nullptr;

TEST_F(TokenizeCommand, PrintsTheIdsOfAPrompt) {
    const auto loaded = test::load_tokenizer(dir_->file("neox.gguf"));
    const std::string text = "Hello world, it's <|endoftext|> 12345";
    const test::CommandResult result = tokenize(model("neox.gguf") + " -p " + shell_quote(text));
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, joined(loaded.tokenizer->encode(text, false)));
}

TEST_F(TokenizeCommand, ReadsTheTextFromAFile) {
    const auto loaded = test::load_tokenizer(dir_->file("neox.gguf"));
    const std::string text = "two\nlines\n\ttab \xF0\x9F\x98\x80\n";
    std::ofstream(dir_->file("text.txt"), std::ios::binary) << text;
    const test::CommandResult result = tokenize(model("neox.gguf") + " -f " + shell_quote(dir_->file("text.txt")));
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, joined(loaded.tokenizer->encode(text, false)));
}

TEST_F(TokenizeCommand, BosAsTheVocabularySaysOrAsAsked) {
    const auto loaded = test::load_tokenizer(dir_->file("mistral.gguf"));
    const std::vector<int32_t> without = loaded.tokenizer->encode("Hi there", false);
    std::vector<int32_t> with = {loaded.tokenizer->bos()};
    with.insert(with.end(), without.begin(), without.end());
    EXPECT_EQ(tokenize(model("mistral.gguf") + " -p 'Hi there'").out, joined(with));  // SentencePiece adds BOS
    EXPECT_EQ(tokenize(model("mistral.gguf") + " --no-bos -p 'Hi there'").out, joined(without));
    EXPECT_EQ(tokenize(model("mistral.gguf") + " --bos -p 'Hi there'").out, joined(with));
}

TEST_F(TokenizeCommand, EmptyTextPrintsAnEmptyLine) {
    const test::CommandResult result = tokenize(model("neox.gguf") + " -p ''");
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, "\n");
}

TEST_F(TokenizeCommand, BadInputGivesOneErrorLine) {
    const auto expect_failure = [](const test::CommandResult& result, const std::string& needle) {
        EXPECT_NE(result.exit_code, 0);
        EXPECT_EQ(result.out, "");
        EXPECT_NE(result.err.find(needle), std::string::npos) << result.err;
        EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << "not one line: " << result.err;
    };
    expect_failure(tokenize(model("neox.gguf")), "-p TEXT or -f FILE");
    expect_failure(tokenize("-m " + shell_quote(dir_->file("missing.gguf")) + " -p hi"), "missing.gguf");
    expect_failure(tokenize(model("neox.gguf") + " -f " + shell_quote(dir_->file("missing.txt"))), "missing.txt");
    expect_failure(tokenize(model("neox.gguf") + " -p hi -f " + shell_quote(dir_->file("text.txt"))), "excludes");

    expect_failure(tokenize(model("neox.gguf") + " --bos -p hi"), "no BOS token");

    std::ofstream(dir_->file("not.gguf"), std::ios::binary) << "this is not a GGUF file";
    expect_failure(tokenize(model("not.gguf") + " -p hi"), "not.gguf");

    GgufWriter no_vocab;
    no_vocab.set("general.name", GgufValue::string("empty"));
    no_vocab.write(dir_->file("no_vocab.gguf"));
    expect_failure(tokenize(model("no_vocab.gguf") + " -p hi"), "no vocabulary");
}

}  // namespace
}  // namespace dendro
