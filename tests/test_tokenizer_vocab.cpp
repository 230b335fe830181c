// Tokenizer::from_gguf on small hand-made vocabularies: a working byte-level BPE, and every kind of broken
// vocabulary (missing or mistyped keys, merges naming unknown tokens, ids out of range, bad SentencePiece
// models) failing with a dendro::Error that names the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "tokenizer/spm_model_proto.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_gguf.h"

namespace dendro {
namespace {

using Edit = std::function<void(GgufWriter&)>;

constexpr int32_t kNormal = static_cast<int32_t>(TokenType::Normal);
constexpr int32_t kControl = static_cast<int32_t>(TokenType::Control);
constexpr int32_t kUnknown = static_cast<int32_t>(TokenType::Unknown);
constexpr int32_t kByte = static_cast<int32_t>(TokenType::Byte);

// A byte-level BPE vocabulary: a, b, ab (from the merge "a b"), "Ġa" and "Ġ" (a space), and a control token.
void small_bpe(GgufWriter& w) {
    w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    w.set("tokenizer.ggml.pre", GgufValue::string("gpt-2"));
    w.set("tokenizer.ggml.tokens", GgufValue::string_array({"a", "b", "ab", "\xC4\xA0", "\xC4\xA0" "a", "<|end|>"}));
    w.set("tokenizer.ggml.token_type", GgufValue::i32_array({kNormal, kNormal, kNormal, kNormal, kNormal, kControl}));
    w.set("tokenizer.ggml.merges", GgufValue::string_array({"a b", "\xC4\xA0 a"}));
    w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(5));
}

// A SentencePiece vocabulary without a stored model: <unk>, <s>, </s>, the 256 byte tokens (SentencePiece's
// byte fallback needs them all), then "▁", "a" and "▁a".
constexpr int32_t kFirstByte = 3, kSpace = 259, kA = 260, kSpaceA = 261;
void small_spm(GgufWriter& w) {
    constexpr int kBytes = 256;
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {kUnknown, kControl, kControl};
    for (int byte = 0; byte < kBytes; ++byte) {
        char piece[sizeof("<0x00>")];
        std::snprintf(piece, sizeof(piece), "<0x%02X>", byte);
        tokens.push_back(piece);
        types.push_back(kByte);
    }
    for (const char* piece : {"\xE2\x96\x81", "a", "\xE2\x96\x81" "a"}) {
        tokens.push_back(piece);
        types.push_back(kNormal);
    }
    std::vector<float> scores(tokens.size(), 0.0f);
    scores[kSpace] = -1;
    scores[kA] = -2;
    scores[kSpaceA] = -3;
    w.set("tokenizer.ggml.model", GgufValue::string("llama"));
    w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
    w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    w.set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
}

class VocabFile : public ::testing::Test {
protected:
    test::LoadedTokenizer load(const Edit& base, const Edit& edit = {}) {
        GgufWriter writer;
        if (base) base(writer);
        if (edit) edit(writer);
        const std::string path = dir_.file("v" + std::to_string(count_++) + ".gguf");
        writer.write(path);
        return test::load_tokenizer(path);
    }
    // Expects loading to throw a dendro::Error whose message contains `needle`.
    void expect_error(const Edit& base, const Edit& edit, const std::string& needle) {
        try {
            load(base, edit);
            ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    }

    test::TempDir dir_;
    int count_ = 0;
};

TEST_F(VocabFile, SmallBpeWorks) {
    const auto loaded = load(small_bpe);
    const Tokenizer& tok = *loaded.tokenizer;
    EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{2}));
    EXPECT_EQ(tok.encode("aab a<|end|>", false), (std::vector<int32_t>{0, 2, 4, 5}));
    EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{2}));  // 'c' has no token and there is no <unk>
    EXPECT_EQ(tok.decode(std::vector<int32_t>{2, 4, 5}), "ab a");
    EXPECT_EQ(tok.eos(), 5);
    EXPECT_EQ(tok.bos(), -1);
}

TEST_F(VocabFile, SmallRebuiltSentencePieceWorks) {
    const auto loaded = load(small_spm);
    const Tokenizer& tok = *loaded.tokenizer;
    EXPECT_EQ(tok.encode("a a", true), (std::vector<int32_t>{1, kSpaceA, kSpaceA}));
    EXPECT_EQ(tok.encode("AB", false), (std::vector<int32_t>{kSpace, kFirstByte + 'A', kFirstByte + 'B'}));
    EXPECT_EQ(tok.decode(std::vector<int32_t>{1, kSpaceA, kSpaceA, kFirstByte + 'A'}), "a aA");
}

TEST_F(VocabFile, MissingOrUnknownModelName) {
    expect_error(nullptr, [](GgufWriter& w) { w.set("general.name", GgufValue::string("x")); },
                 "tokenizer.ggml.model");
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.model", GgufValue::string("wordpiece")); },
                 "'wordpiece'");
}

TEST_F(VocabFile, MissingOrEmptyTokens) {
    expect_error(nullptr, [](GgufWriter& w) { w.set("tokenizer.ggml.model", GgufValue::string("gpt2")); },
                 "tokenizer.ggml.tokens");
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.tokens", GgufValue::string_array({})); },
                 "tokenizer.ggml.tokens is empty");
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.tokens", GgufValue::u32(3)); },
                 "tokenizer.ggml.tokens");
}

TEST_F(VocabFile, BadTokenTypes) {
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.token_type", GgufValue::i32_array({1, 1})); },
                 "tokenizer.ggml.token_type has 2 entries");
    expect_error(small_bpe,
                 [](GgufWriter& w) { w.set("tokenizer.ggml.token_type", GgufValue::i32_array({1, 1, 1, 1, 9, 3})); },
                 "tokenizer.ggml.token_type[4] = 9");
}

TEST_F(VocabFile, SpecialIdOutOfRange) {
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(6)); },
                 "tokenizer.ggml.bos_token_id = 6 is out of range");
    expect_error(small_spm, [](GgufWriter& w) { w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(1000)); },
                 "tokenizer.ggml.eos_token_id = 1000");
}

TEST_F(VocabFile, BadMerges) {
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::string_array({"a c"})); },
                 "tokenizer.ggml.merges[0] = 'a c' refers to 'c'");
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::string_array({"b a"})); },
                 "refers to 'ba'");
    expect_error(small_bpe,
                 [](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::string_array({"a b", "ab"})); },
                 "tokenizer.ggml.merges[1] = 'ab' is not two tokens");
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::u32(0)); },
                 "tokenizer.ggml.merges");
}

TEST_F(VocabFile, MissingMerges) {
    const Edit without_merges = [](GgufWriter& w) {
        w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
        w.set("tokenizer.ggml.pre", GgufValue::string("gpt-2"));
        w.set("tokenizer.ggml.tokens", GgufValue::string_array({"a"}));
    };
    expect_error(nullptr, without_merges, "tokenizer.ggml.merges is missing");
}

TEST_F(VocabFile, UnsupportedPreTokenizer) {
    expect_error(small_bpe, [](GgufWriter& w) { w.set("tokenizer.ggml.pre", GgufValue::string("llama-bpe")); },
                 "tokenizer.ggml.pre is 'llama-bpe'");
}

TEST_F(VocabFile, NormalTokenThatIsNotByteLevel) {
    expect_error(small_bpe,
                 [](GgufWriter& w) {
                     w.set("tokenizer.ggml.tokens", GgufValue::string_array({"a", "b", "ab", " ", " a", "<|end|>"}));
                 },
                 "token 3 of tokenizer.ggml.tokens is not byte-level");
}

TEST_F(VocabFile, SentencePieceWithoutScoresOrUnknown) {
    const Edit without_scores = [](GgufWriter& w) {
        w.set("tokenizer.ggml.model", GgufValue::string("llama"));
        w.set("tokenizer.ggml.tokens", GgufValue::string_array({"<unk>", "a"}));
    };
    expect_error(nullptr, without_scores, "tokenizer.ggml.scores is missing");
    expect_error(small_spm, [](GgufWriter& w) { w.set("tokenizer.ggml.scores", GgufValue::f32_array({0, 0})); },
                 "tokenizer.ggml.scores has 2 entries");
    expect_error(small_spm,
                 [](GgufWriter& w) {
                     std::vector<int32_t> types(kSpaceA + 1, kNormal);  // no UNKNOWN piece
                     w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
                 },
                 "cannot build a SentencePiece model");
}

TEST_F(VocabFile, BadStoredSentencePieceModel) {
    expect_error(small_spm,
                 [](GgufWriter& w) { w.set(kSpmModelKey, GgufValue::array(GgufType::UINT8, std::vector<uint64_t>{8, 1, 2})); },
                 kSpmModelKey);
    expect_error(small_spm, [](GgufWriter& w) { w.set(kSpmModelKey, GgufValue::string("proto")); },
                 "must be an array of uint8");

    // A well-formed model whose pieces disagree with the token list.
    SpmModel model;
    model.model_type = SpmModelType::Bpe;
    model.pieces = {{"<unk>", 0, SpmPieceType::Unknown}, {"<s>", 0, SpmPieceType::Control},
                    {"</s>", 0, SpmPieceType::Control}, {"x", -1, SpmPieceType::Normal}};
    const std::string serialized = serialize_spm_model(model);
    std::vector<uint64_t> unsigned_bytes;
    for (const char c : serialized) unsigned_bytes.push_back(static_cast<unsigned char>(c));
    expect_error(small_spm, [&](GgufWriter& w) { w.set(kSpmModelKey, GgufValue::array(GgufType::UINT8, unsigned_bytes)); },
                 "piece 3 is 'x' but tokenizer.ggml.tokens has '<0x00>'");
}

TEST_F(VocabFile, IdsOutOfRangeAreRejected) {
    const auto loaded = load(small_bpe);
    EXPECT_THROW(loaded.tokenizer->token_text(6), Error);
    EXPECT_THROW(loaded.tokenizer->token_bytes(-1), Error);
    EXPECT_THROW(loaded.tokenizer->decode(std::vector<int32_t>{0, 99}), Error);
    StreamDecoder stream(*loaded.tokenizer);
    EXPECT_THROW(stream.push(99), Error);
}

}  // namespace
}  // namespace dendro
