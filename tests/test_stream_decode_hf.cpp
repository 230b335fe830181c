// The text `dendro run` streams after the prompt is decode(prompt + continuation) minus decode(prompt), as HF
// transformers decodes whole sequences (skip_special_tokens=True): the SentencePiece dummy-prefix space is
// dropped at the start of the sequence only, never before the first generated token. The references are
// HF's own decodes (tests/data/stream_decode/hf_decode.json, written by tools/make_stream_decode_fixtures.py)
// for SentencePiece (spm-shakespeare, the bundled model's dendro-shakespeare, Mistral v3) and byte-level BPE
// (bpe-shakespeare, GPT-NeoX-20B) tokenizers, with prompts ending in a space or newline, continuations
// starting with a space piece, characters split across tokens, byte-fallback and special tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "temp_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_gguf.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro {
namespace {

namespace fs = std::filesystem;

// HF's byte-fallback decoder turns a whole run of byte tokens into U+FFFDs when the run is not valid UTF-8,
// valid bytes of the prompt included, so decode(prompt) is not a prefix of decode(prompt + continuation)
// and "minus" has no meaning. Only this case may show it.
constexpr const char* kHfNonPrefixCase = "byte_fallback_lone_invalid_byte";

const nlohmann::json& fixture() {
    static const nlohmann::json json = [] {
        std::ifstream in(test::test_data_path("stream_decode/hf_decode.json"));
        return nlohmann::json::parse(in);
    }();
    return json;
}

const nlohmann::json& tokenizer_entry(const std::string& name) {
    for (const nlohmann::json& entry : fixture().at("tokenizers")) {
        if (entry.at("name") == name) return entry;
    }
    throw std::runtime_error("no tokenizer " + name + " in hf_decode.json");
}

// The GGUF vocabulary the converter makes from the tokenizer's directory (the file's directory for a bare
// tokenizer file).
test::LoadedTokenizer load(const nlohmann::json& entry, const test::TempDir& dir) {
    fs::path source = fs::path(test::test_data_path("../..")) / entry.at("source").get<std::string>();
    if (!fs::is_directory(source)) source = source.parent_path();
    const std::string gguf = dir.file("vocab.gguf");
    test::write_vocab_gguf(gguf, source.string(), entry.at("vocab_size").get<int64_t>());
    return test::load_tokenizer(gguf);
}

class StreamDecodeHf : public ::testing::TestWithParam<const char*> {};

TEST_P(StreamDecodeHf, StreamedContinuationIsWholeDecodeMinusPromptDecode) {
    const nlohmann::json& entry = tokenizer_entry(GetParam());
    const test::TempDir dir;
    const test::LoadedTokenizer loaded = load(entry, dir);
    const Tokenizer& tokenizer = *loaded.tokenizer;
    ASSERT_FALSE(entry.at("cases").empty());
    for (const nlohmann::json& c : entry.at("cases")) {
        const std::string name = c.at("name");
        const auto prompt = c.at("prompt_ids").get<std::vector<int32_t>>();
        const auto continuation = c.at("continuation_ids").get<std::vector<int32_t>>();
        const std::string prompt_text = c.at("prompt_text"), full_text = c.at("full_text");
        if (!full_text.starts_with(prompt_text)) {
            EXPECT_EQ(name, kHfNonPrefixCase) << "HF's decode of the prompt is not a prefix of the whole";
            continue;
        }
        std::string streamed;
        StreamDecoder stream(tokenizer, prompt);
        for (const int32_t id : continuation) {
            const std::string piece = stream.push(id);
            EXPECT_EQ(utf8::replace_invalid(piece), piece) << name << ": half a character was emitted";
            streamed += piece;
        }
        streamed += stream.flush();
        EXPECT_EQ(streamed, full_text.substr(prompt_text.size())) << GetParam() << " " << name;
    }
}

TEST_P(StreamDecodeHf, WholeSequenceDecodeIsHfs) {
    const nlohmann::json& entry = tokenizer_entry(GetParam());
    const test::TempDir dir;
    const test::LoadedTokenizer loaded = load(entry, dir);
    for (const nlohmann::json& c : entry.at("cases")) {
        std::vector<int32_t> ids = c.at("prompt_ids").get<std::vector<int32_t>>();
        const auto continuation = c.at("continuation_ids").get<std::vector<int32_t>>();
        EXPECT_EQ(utf8::replace_invalid(loaded.tokenizer->decode(ids)), c.at("prompt_text").get<std::string>())
            << GetParam() << " " << c.at("name");
        ids.insert(ids.end(), continuation.begin(), continuation.end());
        if (c.at("name") == kHfNonPrefixCase) continue;  // HF's byte grouping, see above
        EXPECT_EQ(utf8::replace_invalid(loaded.tokenizer->decode(ids)), c.at("full_text").get<std::string>())
            << GetParam() << " " << c.at("name");
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, StreamDecodeHf,
                         ::testing::Values("spm-shakespeare", "dendro-shakespeare", "mistral-v3", "bpe-shakespeare",
                                           "gpt-neox-20b"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                             std::string name = info.param;
                             for (char& ch : name) {
                                 if (ch == '-') ch = '_';
                             }
                             return name;
                         });

}  // namespace
}  // namespace dendro
