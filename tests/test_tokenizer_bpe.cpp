// Byte-level BPE (GPT-NeoX-20B) from a GGUF vocabulary written by add_hf_tokenizer: exact ids against HF
// tokenizers on all of tinyshakespeare and the hard samples, decoding, special tokens, ill-formed UTF-8,
// BOS/EOS from the config files, and the StreamDecoder.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

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

// `tok` gives the ids the reference `reference` gave for the sample `name`, and decodes them as it did.
void expect_matches_fixture(const Tokenizer& tok, const std::string& reference, const std::string& name) {
    const std::string text = read_text(fixture_path(name + ".txt"));
    const std::vector<int32_t> expected = read_fixture_ids(fixture_path(reference + "/" + name + ".ids"));
    EXPECT_EQ(tok.encode(text, false), expected) << reference << "/" << name;
    EXPECT_EQ(tok.decode(expected), read_text(fixture_path(reference + "/" + name + ".decoded.txt")))
        << reference << "/" << name;
}

// The GPT-NeoX vocabulary with tokenizer.ggml.pre set to `pre`.
test::LoadedTokenizer load_neox_with_pre(const test::TempDir& dir, const std::string& pre) {
    const std::string path = dir.file("neox-" + pre + ".gguf");
    test::write_vocab_gguf(path, test::tokenizer_dir(test::kNeoxTokenizer), test::kNeoxPaddedVocab,
                           [&](GgufWriter& w) { w.set("tokenizer.ggml.pre", GgufValue::string(pre)); });
    return test::load_tokenizer(path);
}

class NeoxTokenizer : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        const std::string path = dir_->file("neox.gguf");
        test::write_vocab_gguf(path, test::tokenizer_dir(test::kNeoxTokenizer), test::kNeoxPaddedVocab);
        loaded_ = new test::LoadedTokenizer(test::load_tokenizer(path));
    }
    static void TearDownTestSuite() {
        delete loaded_;
        delete dir_;
    }
    static const Tokenizer& tok() { return *loaded_->tokenizer; }

    // The id of the token whose stored text is `text`.
    static int32_t id_of(const std::string& text) {
        for (int32_t id = 0; id < tok().n_vocab(); ++id) {
            if (tok().token_text(id) == text) return id;
        }
        ADD_FAILURE() << "no token '" << text << "'";
        return -1;
    }

    static void expect_fixture(const std::string& name) { expect_matches_fixture(tok(), "gpt-neox-20b", name); }

    static test::TempDir* dir_;
    static test::LoadedTokenizer* loaded_;
};
test::TempDir* NeoxTokenizer::dir_ = nullptr;
test::LoadedTokenizer* NeoxTokenizer::loaded_ = nullptr;

TEST_F(NeoxTokenizer, MatchesHfOnAllOfTinyShakespeare) {
    const std::string text = read_text(test::test_data_path("text/tinyshakespeare.txt"));
    const std::vector<int32_t> expected = read_fixture_ids(fixture_path("gpt-neox-20b/tinyshakespeare.ids"));
    const std::vector<int32_t> ids = tok().encode(text, false);
    ASSERT_EQ(ids.size(), expected.size());
    for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], expected[i]) << "first difference at token " << i;
}

TEST_F(NeoxTokenizer, MatchesHfOnHardSample) { expect_fixture("hard_sample"); }
TEST_F(NeoxTokenizer, MatchesHfOnNormalizationSample) { expect_fixture("normalization_sample"); }
TEST_F(NeoxTokenizer, MatchesHfOnSpecialTokensInText) { expect_fixture("special_sample"); }

TEST_F(NeoxTokenizer, DecodeOfEncodeGivesTheTextBack) {
    const std::string sample = read_text(fixture_path("hard_sample.txt"));
    EXPECT_EQ(tok().decode(tok().encode(sample, false)), utf8::nfc(sample));

    // This tokenizer.json makes "assistant" a special (control) token, which decodes to nothing: the corpus
    // comes back without it.
    std::string corpus = read_text(test::test_data_path("text/tinyshakespeare.txt"));
    const std::vector<int32_t> ids = tok().encode(corpus, false);
    const std::string control_word = "assistant";
    size_t removed = 0;
    for (size_t at = corpus.find(control_word); at != std::string::npos; at = corpus.find(control_word, at)) {
        corpus.erase(at, control_word.size());
        ++removed;
    }
    EXPECT_EQ(removed, 2u);
    EXPECT_EQ(tok().decode(ids), corpus);
}

TEST_F(NeoxTokenizer, VocabularyAsConverted) {
    EXPECT_EQ(tok().model_name(), "gpt2");
    EXPECT_EQ(tok().n_vocab(), test::kNeoxPaddedVocab);
    EXPECT_EQ(tok().token_text(0), "<|endoftext|>");
    EXPECT_EQ(tok().token_bytes(0), "");            // control
    EXPECT_EQ(tok().token_text(50276), "  ");       // an added whitespace token, stored raw
    EXPECT_EQ(tok().token_bytes(50276), "  ");
    EXPECT_EQ(tok().token_text(50287), "[PAD50287]");
    EXPECT_EQ(tok().token_bytes(50287), "");        // padding
    EXPECT_EQ(tok().token_bytes(id_of("\xC4\xA0the")), " the");  // "Ġthe"
    // Only tokenizer.json in the directory: no special ids, no BOS added.
    EXPECT_EQ(tok().bos(), -1);
    EXPECT_EQ(tok().eos(), -1);
    EXPECT_FALSE(tok().add_bos_default());
    EXPECT_EQ(tok().encode("hi", true), tok().encode("hi", false));
    EXPECT_THROW(tok().token_text(test::kNeoxPaddedVocab), Error);
    EXPECT_THROW(tok().decode(std::vector<int32_t>{-1}), Error);
}

TEST_F(NeoxTokenizer, SpecialTokensTakeTheLongestMatch) {
    // HF: 'a' + 30 spaces + 'b' -> a, 24 spaces, 6 spaces, b.
    EXPECT_EQ(tok().encode("a" + std::string(30, ' ') + "b", false), (std::vector<int32_t>{66, 50254, 50272, 67}));
    EXPECT_EQ(tok().encode("<|endoftext|>", false), std::vector<int32_t>{0});
    EXPECT_EQ(tok().encode("<|endoftext|><|endoftext|>", false), (std::vector<int32_t>{0, 0}));
    const std::vector<int32_t> partial = tok().encode("<|endoftext|", false);
    EXPECT_EQ(std::count(partial.begin(), partial.end(), 0), 0);
}

TEST_F(NeoxTokenizer, IllFormedBytesBecomeByteTokens) {
    const int32_t byte_e2 = id_of("\xC3\xA2");  // 0xE2 stands for itself: U+00E2
    const int32_t byte_82 = id_of("\xC4\xA4");  // 0x82 -> U+0124 (the 37th remapped byte)

    std::vector<int32_t> expected = tok().encode("a", false);
    expected.push_back(byte_82);  // a stray continuation byte
    for (const int32_t id : tok().encode(" b", false)) expected.push_back(id);
    EXPECT_EQ(tok().encode("a\x82 b", false), expected);
    // 0xFF has no token in this vocabulary (and there is no unknown token): it is dropped.
    EXPECT_EQ(tok().encode("a\xFF\x82 b", false), expected);

    // A truncated character: each of its bytes alone; then well-formed text again.
    std::vector<int32_t> truncated = {byte_e2, byte_82};
    for (const int32_t id : tok().encode("x", false)) truncated.push_back(id);
    EXPECT_EQ(tok().encode("\xE2\x82x", false), truncated);

    const std::string bad = "ok \xE0\x80\xAF \xED\xA0\x80 \xF4\x90\x80\x80 end\xE2";
    EXPECT_EQ(tok().decode(tok().encode(bad, false)), bad);
}

TEST_F(NeoxTokenizer, StreamDecoderNeverSplitsACharacter) {
    const std::string emoji = "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 "
                              "\xF0\x9F\x94\xA5\xF0\x9F\x94\xA5 \xF0\x9F\x87\xAF\xF0\x9F\x87\xB5";
    test::expect_streams_like_decode(tok(), tok().encode(emoji, false), true);
    test::expect_streams_like_decode(tok(), read_fixture_ids(fixture_path("gpt-neox-20b/hard_sample.ids")), true);
}

TEST_F(NeoxTokenizer, StreamDecoderFlushReplacesAnUnfinishedCharacter) {
    StreamDecoder stream(tok());
    EXPECT_EQ(stream.push(id_of("\xC3\xA2")), "");  // 0xE2 starts a three-byte character
    EXPECT_EQ(stream.push(id_of("\xC4\xA4")), "");  // 0x82 continues it
    EXPECT_EQ(stream.flush(), std::string(utf8::kReplacementCharacter));
    EXPECT_EQ(stream.flush(), "");
    // A byte that cannot start a character is replaced at once.
    EXPECT_EQ(stream.push(id_of("\xC4\xA4")), std::string(utf8::kReplacementCharacter));
}

// The names llama.cpp gives the GPT-NeoX-20B tokenizer ("olmo" from its converter for any GPT-NeoX
// tokenizer.json, "mpt" for its built-in copy) both mean the GPT-2 split after NFC, as HF's tokenizer.json does.
class NeoxPreTokenizerName : public ::testing::TestWithParam<const char*> {};

TEST_P(NeoxPreTokenizerName, MatchesHfWithNfc) {
    test::TempDir dir;
    const test::LoadedTokenizer loaded = load_neox_with_pre(dir, GetParam());
    for (const char* name : {"hard_sample", "normalization_sample", "special_sample"}) {
        expect_matches_fixture(*loaded.tokenizer, "gpt-neox-20b", name);
    }
}

INSTANTIATE_TEST_SUITE_P(LlamaCppNames, NeoxPreTokenizerName, ::testing::Values("mpt", "olmo"));

// "gpt-2" is the same split without normalization: HF with the tokenizer.json's NFC normalizer removed.
TEST(GptTwoPreTokenizerName, MatchesHfWithoutNormalization) {
    test::TempDir dir;
    const test::LoadedTokenizer loaded = load_neox_with_pre(dir, "gpt-2");
    for (const char* name : {"hard_sample", "normalization_sample"}) {
        expect_matches_fixture(*loaded.tokenizer, "gpt-neox-20b-no-nfc", name);
    }
}

// "dbrx" (llama.cpp's name for the Granite 4.0 tokenizer) is the cl100k-style split without normalization: HF
// with the GPT-NeoX vocabulary behind a Split on that pattern, as cl100k-style tokenizer.json files declare it.
TEST(DbrxPreTokenizerName, MatchesHfCl100kSplit) {
    test::TempDir dir;
    const test::LoadedTokenizer loaded = load_neox_with_pre(dir, "dbrx");
    for (const char* name : {"hard_sample", "normalization_sample", "split_sample"}) {
        expect_matches_fixture(*loaded.tokenizer, "gpt-neox-20b-cl100k-split", name);
    }
}

TEST(PreTokenizerName, UnknownNameIsRefusedWithTheKnownOnes) {
    test::TempDir dir;
    try {
        load_neox_with_pre(dir, "falcon");
        ADD_FAILURE() << "no error for tokenizer.ggml.pre 'falcon'";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre is 'falcon'; Dendro's byte-level BPE knows "
                                             "'gpt-2', 'mpt', 'olmo', 'dbrx'"),
                  std::string::npos)
            << e.what();
    }
}

// BOS/EOS and add_bos come from config.json / tokenizer_config.json next to tokenizer.json.
TEST(NeoxTokenizerConfig, SpecialIdsFromConfigFiles) {
    test::TempDir dir;
    std::filesystem::create_symlink(test::tokenizer_dir(test::kNeoxTokenizer) + "/tokenizer.json",
                                    dir.file("tokenizer.json"));
    std::ofstream(dir.file("config.json")) << R"({"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1})";
    std::ofstream(dir.file("tokenizer_config.json"))
        << R"({"add_bos_token": true, "eos_token": "<|im_end|>", "bos_token": {"content": "<|endoftext|>"}})";
    const std::string path = dir.file("v.gguf");
    test::write_vocab_gguf(path, dir.path(), test::kNeoxPaddedVocab);
    const test::LoadedTokenizer loaded = test::load_tokenizer(path);
    const Tokenizer& tok = *loaded.tokenizer;
    EXPECT_EQ(tok.bos(), 0);
    EXPECT_EQ(tok.eos(), 50278);  // tokenizer_config.json's eos_token wins over config.json's eos_token_id
    EXPECT_TRUE(tok.is_end_of_generation(50278));
    EXPECT_FALSE(tok.is_end_of_generation(0));
    EXPECT_TRUE(tok.add_bos_default());
    EXPECT_EQ(tok.encode("hi", true).front(), 0);
    EXPECT_EQ(loaded.file->get_uint("tokenizer.ggml.padding_token_id"), 1u);
}

}  // namespace
}  // namespace dendro
