// `dendro info`: the report on a valid file, and one error line with a non-zero exit on a bad one.
#include <gtest/gtest.h>

#include <cstring>

#include "format/gguf.h"
#include "run_command.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::run_command;
using test::shell_quote;

std::string info_command(const std::string& path) { return shell_quote(DENDRO_EXE) + " info " + shell_quote(path); }

void expect_contains(const std::string& text, const std::string& fragment) {
    EXPECT_NE(text.find(fragment), std::string::npos) << "missing: " << fragment << "\nin:\n" << text;
}

TEST(CmdInfo, ReportsAMambaFile) {
    const test::TempDir dir;
    const std::string path = dir.file("tiny-mamba.gguf");
    GgufWriter writer;
    writer.set("general.architecture", GgufValue::string("mamba"));
    writer.set("general.name", GgufValue::string("Tiny Mamba"));
    writer.set("mamba.embedding_length", GgufValue::u32(64));
    writer.set("mamba.block_count", GgufValue::u32(2));
    writer.set("mamba.ssm.state_size", GgufValue::u32(16));
    writer.set("mamba.attention.layer_norm_rms_epsilon", GgufValue::f32(1e-5f));
    writer.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    writer.set("tokenizer.ggml.tokens", GgufValue::string_array({"<|endoftext|>", "a", "b", "c"}));
    writer.set("tokenizer.ggml.token_type", GgufValue::i32_array({3, 1, 1, 1}));
    writer.set("tokenizer.ggml.bos_token_id", GgufValue::u32(0));
    writer.set("tokenizer.ggml.eos_token_id", GgufValue::u32(3));
    writer.set("extra.note", GgufValue::string("hi"));
    writer.add_tensor("token_embd.weight", GgmlType::F16, {64, 4}, std::vector<uint8_t>(64 * 4 * 2));
    writer.add_tensor("output_norm.weight", GgmlType::F32, {64}, std::vector<uint8_t>(64 * 4));
    writer.add_tensor("blk.0.ssm_in.weight", GgmlType::Q8_0, {64, 256}, std::vector<uint8_t>(2 * 34 * 256));
    writer.write(path);

    const auto result = run_command(info_command(path));
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.err, "");
    const std::string& out = result.out;
    expect_contains(out, "GGUF version 3, alignment 32, 12 keys, 3 tensors");
    expect_contains(out, "architecture: mamba");
    expect_contains(out, "hyper-parameters (mamba.*):");
    expect_contains(out, "mamba.embedding_length");
    expect_contains(out, "= 64");
    expect_contains(out, "= 1e-05");
    expect_contains(out, "general.name");
    expect_contains(out, "\"Tiny Mamba\"");
    expect_contains(out, "tokenizer:");
    expect_contains(out, "gpt2");
    expect_contains(out, "vocab size");
    expect_contains(out, "array<i32>[4] {3, 1, 1, 1}");
    expect_contains(out, "other keys:");
    expect_contains(out, "extra.note");
    expect_contains(out, "tensors: 3");
    expect_contains(out, "blk.0.ssm_in.weight");
    expect_contains(out, "q8_0");
    expect_contains(out, "{64, 256}");
    expect_contains(out, "17408");  // Q8_0 bytes: 256 rows of 2 blocks of 34 bytes
    // The tokenizer summary lines carry the values.
    const size_t bos = out.find("bos token id");
    ASSERT_NE(bos, std::string::npos);
    EXPECT_EQ(out.substr(bos, out.find('\n', bos) - bos).back(), '0');
    const size_t eos = out.find("eos token id");
    ASSERT_NE(eos, std::string::npos);
    EXPECT_EQ(out.substr(eos, out.find('\n', eos) - eos).back(), '3');
    const size_t vocab = out.find("vocab size");
    EXPECT_EQ(out.substr(vocab, out.find('\n', vocab) - vocab).back(), '4');
}

TEST(CmdInfo, NonGgufFileIsOneErrorLine) {
    const test::TempDir dir;
    const std::string path = dir.file("notes.txt");
    const std::string text = "just some text\n";
    test::write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
    const auto result = run_command(info_command(path));
    EXPECT_NE(result.exit_code, 0);
    EXPECT_EQ(result.out, "");
    ASSERT_FALSE(result.err.empty());
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
    expect_contains(result.err, path);
    expect_contains(result.err, "not a GGUF file");
}

TEST(CmdInfo, MissingFileIsOneErrorLine) {
    const auto result = run_command(info_command("/nonexistent/dendro/model.gguf"));
    EXPECT_NE(result.exit_code, 0);
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
    expect_contains(result.err, "/nonexistent/dendro/model.gguf");
}

}  // namespace
}  // namespace dendro
