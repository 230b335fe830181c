// SentencePiece (Mistral v3) from a GGUF vocabulary written by add_hf_tokenizer, both with the stored
// ModelProto and with the model rebuilt from tokens/scores/types (a file without kSpmModelKey, as
// llama.cpp's converter writes): exact ids and decoded text against the sentencepiece library, BOS/EOS,
// the dummy-prefix space, byte fallback and the StreamDecoder.
#include <gtest/gtest.h>

#include "common/error.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_gguf.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro {
namespace {

using test::fixture_path;
using test::read_fixture_ids;
using test::read_text;

constexpr int32_t kBos = 1, kEos = 2, kUnknown = 0;
constexpr int32_t kSpaceToken = 29473;      // "▁"
constexpr int32_t kFirstByteToken = 771;    // <0x00>, after <unk>, <s>, </s> and 768 control pieces

struct MistralTokenizers {
    test::TempDir dir;
    test::LoadedTokenizer stored, rebuilt;
    MistralTokenizers() {
        const std::string stored_path = dir.file("stored.gguf"), rebuilt_path = dir.file("rebuilt.gguf");
        test::write_vocab_gguf(stored_path, test::tokenizer_dir(test::kMistralTokenizer), test::kMistralVocab);
        test::copy_vocab_gguf_without(stored_path, rebuilt_path, kSpmModelKey);
        stored = test::load_tokenizer(stored_path);
        rebuilt = test::load_tokenizer(rebuilt_path);
    }
};

// Parameter: whether the tokenizer runs on the stored proto (true) or the rebuilt one (false).
class MistralTokenizer : public ::testing::TestWithParam<bool> {
protected:
    static void SetUpTestSuite() { tokenizers_ = new MistralTokenizers(); }
    static void TearDownTestSuite() { delete tokenizers_; }
    const Tokenizer& tok() const {
        return GetParam() ? *tokenizers_->stored.tokenizer : *tokenizers_->rebuilt.tokenizer;
    }
    const GgufFile& file() const { return GetParam() ? *tokenizers_->stored.file : *tokenizers_->rebuilt.file; }

    void expect_fixture(const std::string& name, const std::string& input) const {
        const std::string text = read_text(input);
        const std::vector<int32_t> expected = read_fixture_ids(fixture_path("mistral-v3/" + name + ".ids"));
        EXPECT_EQ(tok().encode(text, false), expected) << name;
    }

    static MistralTokenizers* tokenizers_;
};
MistralTokenizers* MistralTokenizer::tokenizers_ = nullptr;

TEST_P(MistralTokenizer, MatchesSentencePieceOnSamples) {
    for (const std::string name : {"hard_sample", "normalization_sample", "special_sample"}) {
        expect_fixture(name, fixture_path(name + ".txt"));
        const std::vector<int32_t> ids = read_fixture_ids(fixture_path("mistral-v3/" + name + ".ids"));
        EXPECT_EQ(tok().decode(ids), read_text(fixture_path("mistral-v3/" + name + ".decoded.txt"))) << name;
    }
}

TEST_P(MistralTokenizer, MatchesSentencePieceOnTinyShakespeareHead) {
    constexpr size_t kHeadBytes = 200000;  // as tools/make_tokenizer_fixtures.py takes
    const std::string head = read_text(test::test_data_path("text/tinyshakespeare.txt")).substr(0, kHeadBytes);
    const std::vector<int32_t> expected = read_fixture_ids(fixture_path("mistral-v3/tinyshakespeare_head.ids"));
    EXPECT_EQ(tok().encode(head, false), expected);
    EXPECT_EQ(tok().decode(expected), head);
}

TEST_P(MistralTokenizer, DecodeOfEncodeGivesTheTextBack) {
    for (const std::string text : {read_text(fixture_path("hard_sample.txt")),
                                   read_text(fixture_path("normalization_sample.txt")), std::string(" Hello"),
                                   std::string("  two leading spaces"), std::string("Hello"), std::string()}) {
        EXPECT_EQ(tok().decode(tok().encode(text, false)), text);
        EXPECT_EQ(tok().decode(tok().encode(text, true)), text);
    }
}

TEST_P(MistralTokenizer, VocabularyAndSpecialIds) {
    EXPECT_EQ(tok().model_name(), "llama");
    EXPECT_EQ(tok().n_vocab(), test::kMistralVocab);
    EXPECT_EQ(tok().bos(), kBos);
    EXPECT_EQ(tok().eos(), kEos);
    EXPECT_TRUE(tok().is_end_of_generation(kEos));
    EXPECT_TRUE(tok().add_bos_default());
    EXPECT_EQ(tok().encode("Hi", true).front(), kBos);
    EXPECT_EQ(tok().encode("Hi", false).front(), tok().encode("Hi", true)[1]);
    EXPECT_EQ(tok().token_text(kBos), "<s>");
    EXPECT_EQ(tok().token_bytes(kBos), "");
    EXPECT_EQ(tok().token_bytes(kUnknown), " \xE2\x81\x87 ");
    EXPECT_EQ(tok().token_bytes(kSpaceToken), " ");
    const int32_t byte_a = kFirstByteToken + 'A';
    EXPECT_EQ(tok().token_text(byte_a), "<0x41>");
    EXPECT_EQ(tok().token_bytes(byte_a), "A");
    EXPECT_EQ(file().get_string("tokenizer.ggml.pre"), "default");
}

TEST_P(MistralTokenizer, ControlTokensInTextAreMatchedAndDecodeToNothing) {
    const std::vector<int32_t> ids = tok().encode("[INST] hi [/INST]", true);
    ASSERT_GE(ids.size(), 4u);
    EXPECT_EQ(ids[0], kBos);
    EXPECT_EQ(ids[1], 3);  // [INST]
    EXPECT_EQ(ids.back(), 4);  // [/INST]
    EXPECT_EQ(tok().decode(ids), " hi ");
}

TEST_P(MistralTokenizer, IllFormedBytesAreReadAsReplacementCharacters) {
    EXPECT_EQ(tok().encode("a\xFF" "b", false), tok().encode("a\xEF\xBF\xBD" "b", false));
}

TEST_P(MistralTokenizer, StreamDecoderMatchesDecode) {
    // Characters outside the vocabulary go through byte-fallback tokens, one byte each.
    const std::string rare = "\xF0\x9F\xA6\x9C \xF0\x9F\xAA\xBC\xF0\x9F\xAB\x8E";
    const std::vector<int32_t> rare_ids = tok().encode(rare, false);
    test::expect_streams_like_decode(tok(), rare_ids, true);
    test::expect_streams_like_decode(tok(), read_fixture_ids(fixture_path("mistral-v3/hard_sample.ids")), false);

    // The dummy-prefix space is dropped at the start of the stream, however the start is spelled.
    for (const std::string text : {std::string("Hello world"), std::string(" world"), std::string("  x")}) {
        for (const bool bos : {false, true}) {
            const std::vector<int32_t> ids = tok().encode(text, bos);
            test::expect_streams_like_decode(tok(), ids, false);
            StreamDecoder stream(tok());
            std::string streamed;
            for (const int32_t id : ids) streamed += stream.push(id);
            EXPECT_EQ(streamed + stream.flush(), text);
        }
    }
    EXPECT_EQ(tok().encode(" world", false).front(), kSpaceToken);
}

INSTANTIATE_TEST_SUITE_P(StoredAndRebuiltModel, MistralTokenizer, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                             return info.param ? "StoredProto" : "RebuiltFromVocabulary";
                         });

}  // namespace
}  // namespace dendro
