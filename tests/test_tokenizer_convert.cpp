// add_hf_tokenizer: the keys and value types it writes (as llama.cpp's converter does), padding, added and
// special tokens, the merges formats, and errors naming the file for missing or corrupt tokenizer files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "hf_tokenizer.h"
#include "tokenizer/spm_model_proto.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_gguf.h"

namespace dendro {
namespace {

int64_t type_of(const GgufFile& file, int64_t id) {
    return file.get_int_array("tokenizer.ggml.token_type").at(static_cast<size_t>(id));
}

void expect_array(const GgufFile& file, const char* key, GgufType element, size_t size) {
    const GgufValue* value = file.find(key);
    ASSERT_NE(value, nullptr) << key;
    EXPECT_EQ(value->type, GgufType::ARRAY) << key;
    EXPECT_EQ(value->array_type, element) << key;
    EXPECT_EQ(value->array_size(), size) << key;
}

void expect_scalar(const GgufFile& file, const char* key, GgufType type) {
    const GgufValue* value = file.find(key);
    ASSERT_NE(value, nullptr) << key;
    EXPECT_EQ(value->type, type) << key;
}

// Expects add_hf_tokenizer on `dir` to throw a dendro::Error whose message contains every needle.
void expect_error(const std::string& dir, int64_t n_vocab, const std::vector<std::string>& needles) {
    GgufWriter writer;
    try {
        add_hf_tokenizer(dir, n_vocab, writer);
        ADD_FAILURE() << "no error for " << dir;
    } catch (const Error& e) {
        for (const std::string& needle : needles) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    }
}

TEST(HfTokenizerWriter, GptNeoxKeysAndTypes) {
    test::TempDir dir;
    const std::string path = dir.file("neox.gguf");
    test::write_vocab_gguf(path, test::tokenizer_dir(test::kNeoxTokenizer), test::kNeoxPaddedVocab);
    const auto file = GgufFile::open(path);
    EXPECT_EQ(file->get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(file->get_string("tokenizer.ggml.pre"), "olmo");  // what llama.cpp's converter writes for it
    expect_array(*file, "tokenizer.ggml.tokens", GgufType::STRING, test::kNeoxPaddedVocab);
    expect_array(*file, "tokenizer.ggml.token_type", GgufType::INT32, test::kNeoxPaddedVocab);
    expect_array(*file, "tokenizer.ggml.merges", GgufType::STRING, 50009);
    EXPECT_EQ(file->find("tokenizer.ggml.scores"), nullptr);
    EXPECT_EQ(file->find(kSpmModelKey), nullptr);
    EXPECT_EQ(file->get_string_array("tokenizer.ggml.merges").front(), "\xC4\xA0 \xC4\xA0");

    EXPECT_EQ(type_of(*file, 0), static_cast<int64_t>(TokenType::Control));      // <|endoftext|>
    EXPECT_EQ(type_of(*file, 100), static_cast<int64_t>(TokenType::Normal));
    EXPECT_EQ(type_of(*file, 50254), static_cast<int64_t>(TokenType::UserDefined));  // 24 spaces
    EXPECT_EQ(type_of(*file, 50279), static_cast<int64_t>(TokenType::Control));  // "assistant", special
    EXPECT_EQ(type_of(*file, 50281), static_cast<int64_t>(TokenType::Unused));
    EXPECT_EQ(file->get_string_array("tokenizer.ggml.tokens")[50281], "[PAD50281]");
}

TEST(HfTokenizerWriter, MistralKeysAndTypes) {
    constexpr int64_t kPadded = test::kMistralVocab + 8;
    test::TempDir dir;
    const std::string path = dir.file("mistral.gguf");
    test::write_vocab_gguf(path, test::tokenizer_dir(test::kMistralTokenizer), kPadded);
    const auto file = GgufFile::open(path);
    EXPECT_EQ(file->get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(file->get_string("tokenizer.ggml.pre"), "default");
    expect_array(*file, "tokenizer.ggml.tokens", GgufType::STRING, kPadded);
    expect_array(*file, "tokenizer.ggml.scores", GgufType::FLOAT32, kPadded);
    expect_array(*file, "tokenizer.ggml.token_type", GgufType::INT32, kPadded);
    const auto model_bytes = std::filesystem::file_size(test::tokenizer_dir(test::kMistralTokenizer) +
                                                        "/tokenizer.model.v3");
    expect_array(*file, kSpmModelKey, GgufType::UINT8, model_bytes);
    expect_scalar(*file, "tokenizer.ggml.bos_token_id", GgufType::UINT32);
    expect_scalar(*file, "tokenizer.ggml.add_space_prefix", GgufType::BOOL);
    EXPECT_EQ(file->get_uint("tokenizer.ggml.bos_token_id"), 1u);
    EXPECT_EQ(file->get_uint("tokenizer.ggml.eos_token_id"), 2u);
    EXPECT_EQ(file->get_uint("tokenizer.ggml.unknown_token_id"), 0u);
    EXPECT_TRUE(file->get_bool("tokenizer.ggml.add_space_prefix"));
    EXPECT_FALSE(file->get_bool("tokenizer.ggml.remove_extra_whitespaces"));
    EXPECT_EQ(type_of(*file, 3), static_cast<int64_t>(TokenType::Control));  // [INST]
    EXPECT_EQ(type_of(*file, 771), static_cast<int64_t>(TokenType::Byte));   // <0x00>
    EXPECT_EQ(type_of(*file, kPadded - 1), static_cast<int64_t>(TokenType::Unused));
    EXPECT_EQ(file->get_string_array("tokenizer.ggml.tokens")[test::kMistralVocab], "[PAD32768]");
}

// A hand-written tokenizer.json: list-of-pairs merges with a space, added tokens special and not, a hole.
TEST(HfTokenizerWriter, SmallTokenizerJson) {
    test::TempDir dir;
    std::ofstream(dir.file("tokenizer.json")) << R"({
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      "decoder": {"type": "ByteLevel"},
      "added_tokens": [{"id": 5, "content": "<|x|>", "special": false},
                       {"id": 7, "content": "</s>", "special": true},
                       {"id": 8, "content": "hello", "special": false}],
      "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120a": 4},
                "merges": [["a", "b"], [" ", "a"]]}})";
    std::ofstream(dir.file("tokenizer_config.json")) << R"({"eos_token": "</s>", "add_eos_token": false})";
    std::ofstream(dir.file("config.json")) << R"({"eos_token_id": 1, "bos_token_id": 0, "pad_token_id": null})";
    GgufWriter writer;
    add_hf_tokenizer(dir.path(), 16, writer);
    const std::string path = dir.file("v.gguf");
    writer.write(path);
    const auto file = GgufFile::open(path);
    EXPECT_EQ(file->get_string("tokenizer.ggml.pre"), "gpt-2");
    EXPECT_EQ(file->get_string_array("tokenizer.ggml.merges"),
              (std::vector<std::string>{"a b", "\xC4\xA0 a"}));
    const std::vector<std::string>& tokens = file->get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 16u);
    EXPECT_EQ(tokens[6], "[PAD6]");
    EXPECT_EQ(type_of(*file, 5), static_cast<int64_t>(TokenType::Control));  // looks special: <|...|>
    EXPECT_EQ(type_of(*file, 6), static_cast<int64_t>(TokenType::Unused));
    EXPECT_EQ(type_of(*file, 7), static_cast<int64_t>(TokenType::Control));
    EXPECT_EQ(type_of(*file, 8), static_cast<int64_t>(TokenType::UserDefined));
    EXPECT_EQ(file->get_uint("tokenizer.ggml.eos_token_id"), 7u);  // tokenizer_config.json first
    EXPECT_EQ(file->get_uint("tokenizer.ggml.bos_token_id"), 0u);  // then config.json
    EXPECT_EQ(file->find("tokenizer.ggml.padding_token_id"), nullptr);
    EXPECT_FALSE(file->get_bool("tokenizer.ggml.add_eos_token"));
    EXPECT_EQ(file->find("tokenizer.ggml.add_bos_token"), nullptr);

    const auto tokenizer = Tokenizer::from_gguf(*file);
    EXPECT_EQ(tokenizer->encode("ab hello a<|x|>", false), (std::vector<int32_t>{2, 3, 8, 4, 5}));
}

TEST(HfTokenizerWriter, MissingAndCorruptFiles) {
    test::TempDir dir;
    expect_error(dir.file("nowhere"), 8, {"nowhere", "not a directory"});
    expect_error(dir.path(), 8, {dir.path(), "no tokenizer found"});

    std::ofstream(dir.file("tokenizer.json")) << "{\"model\": {\"type\": \"BPE\", ";
    expect_error(dir.path(), 8, {"tokenizer.json"});

    std::ofstream(dir.file("tokenizer.json")) << R"({"model": {"type": "WordPiece", "vocab": {}}})";
    expect_error(dir.path(), 8, {"tokenizer.json", "not a byte-level BPE tokenizer", "not BPE"});

    std::ofstream(dir.file("tokenizer.model"), std::ios::binary) << "not a protobuf at all \xFF\xFF";
    expect_error(dir.path(), 8, {"tokenizer.model", "not a valid SentencePiece model"});

    SpmModel unloadable;  // well-formed protobuf, but no <unk> piece: sentencepiece refuses it
    unloadable.pieces = {{"a", 0, SpmPieceType::Normal}};
    std::ofstream(dir.file("tokenizer.model"), std::ios::binary) << serialize_spm_model(unloadable);
    expect_error(dir.path(), 8, {"tokenizer.model", "sentencepiece cannot load it"});
}

TEST(HfTokenizerWriter, VocabularyLargerThanTheModel) {
    expect_error(test::tokenizer_dir(test::kNeoxTokenizer), 50000,
                 {"tokenizer.json", "has id 5", "only 50000 rows"});
    expect_error(test::tokenizer_dir(test::kMistralTokenizer), 1000, {"tokenizer.model.v3", "32768 tokens"});
}

// The state-spaces Mamba checkpoints have 50,280 embedding rows; this tokenizer.json adds four tokens past
// them (ids 50277-50280 hold <|im_start|>, <|im_end|>, assistant, RWKV): those that do not fit are dropped
// with a warning instead of refusing the checkpoint.
TEST(HfTokenizerWriter, AddedTokensPastTheEmbeddingAreDropped) {
    constexpr int64_t kMambaEmbeddingRows = 50280;
    test::TempDir dir;
    GgufWriter writer;
    std::vector<std::string> warnings;
    add_hf_tokenizer(test::tokenizer_dir(test::kNeoxTokenizer), kMambaEmbeddingRows, writer,
                     [&warnings](const std::string& message) { warnings.push_back(message); });
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("id 50280"), std::string::npos) << warnings[0];
    writer.write(dir.file("vocab.gguf"));
    const auto file = GgufFile::open(dir.file("vocab.gguf"));
    expect_array(*file, "tokenizer.ggml.tokens", GgufType::STRING, kMambaEmbeddingRows);
    const auto tokenizer = Tokenizer::from_gguf(*file);
    const std::vector<int32_t> ids = tokenizer->encode("RWKV said hello", false);
    for (int32_t id : ids) EXPECT_LT(id, kMambaEmbeddingRows);
}

TEST(HfTokenizerWriter, SpecialIdFromGenerationConfig) {
    test::TempDir dir;
    std::filesystem::create_symlink(test::tokenizer_dir(test::kNeoxTokenizer) + "/tokenizer.json",
                                    dir.file("tokenizer.json"));
    std::ofstream(dir.file("generation_config.json")) << R"({"pad_token_id": 1, "eos_token_id": [0, 2]})";
    test::write_vocab_gguf(dir.file("vocab.gguf"), dir.path(), test::kNeoxPaddedVocab);
    const auto file = GgufFile::open(dir.file("vocab.gguf"));
    EXPECT_EQ(file->get_uint("tokenizer.ggml.padding_token_id"), 1u);
}

TEST(HfTokenizerWriter, SpecialIdOutOfRangeInConfig) {
    test::TempDir dir;
    std::filesystem::create_symlink(test::tokenizer_dir(test::kNeoxTokenizer) + "/tokenizer.json",
                                    dir.file("tokenizer.json"));
    std::ofstream(dir.file("config.json")) << R"({"eos_token_id": 90000})";
    expect_error(dir.path(), test::kNeoxPaddedVocab, {"config.json", "eos token id 90000 is out of range"});
}

constexpr const char* kInt64Max = "9223372036854775807";
constexpr const char* kUint64Max = "18446744073709551615";
constexpr int64_t kSmallVocabRows = 16;
constexpr int64_t kSpmShakespeareRows = 512;  // the model's padded vocabulary (its tokenizer has 500 pieces)

// A tokenizer directory holding the committed SentencePiece model and the given tokenizer_config.json.
void write_spm_dir(const test::TempDir& dir, const std::string& tokenizer_config) {
    const std::string model = test::test_data_path("hf/tokenizers/spm-shakespeare/tokenizer.model");
    if (!std::filesystem::exists(dir.file("tokenizer.model"))) {
        std::filesystem::create_symlink(model, dir.file("tokenizer.model"));
    }
    std::ofstream(dir.file("tokenizer_config.json")) << tokenizer_config;
}

// A byte-level BPE tokenizer.json with the given model.vocab and added_tokens (JSON text).
void write_bpe_dir(const test::TempDir& dir, const std::string& vocab, const std::string& added_tokens = "[]") {
    std::ofstream(dir.file("tokenizer.json"))
        << concat(R"({"normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},)",
                  R"( "added_tokens": )", added_tokens, R"(, "model": {"type": "BPE", "vocab": )", vocab,
                  R"(, "merges": []}})");
}

// An added_tokens_decoder key is an id written in decimal; id + 1 once overflowed for INT64_MAX, passed the
// range check and wrote past the vocabulary arrays, and std::stoll took "5x", " 5" and "+5" for 5.
TEST(HfTokenizerWriter, AddedTokensDecoderIdsAreCheckedWithoutOverflow) {
    test::TempDir dir;
    for (const std::string key : {std::string(kInt64Max), std::string("512"), std::string("-1"),
                                  std::string(kUint64Max), std::string("5x"), std::string(" 5"), std::string("+5"),
                                  std::string("")}) {
        write_spm_dir(dir, R"({"added_tokens_decoder": {")" + key + R"(": {"content": "<x>", "special": true}}})");
        expect_error(dir.path(), kSpmShakespeareRows,
                     {"tokenizer_config.json", "added_tokens_decoder", "'" + key + "'"});
    }
    write_spm_dir(dir, R"({"added_tokens_decoder": {"511": {"content": "<x>", "special": true}}})");
    GgufWriter writer;
    add_hf_tokenizer(dir.path(), kSpmShakespeareRows, writer);
    writer.write(dir.file("v.gguf"));
    const auto file = GgufFile::open(dir.file("v.gguf"));
    EXPECT_EQ(file->get_string_array("tokenizer.ggml.tokens")[511], "<x>");
    EXPECT_EQ(type_of(*file, 511), static_cast<int64_t>(TokenType::Control));
}

// A model.vocab id past the model's rows once went through by_id.rbegin() + 1: INT64_MAX overflowed and the
// token was silently dropped; ids above INT64_MAX read back negative. Each names the token and its id.
TEST(HfTokenizerWriter, VocabIdsOutOfRangeAreNamed) {
    test::TempDir dir;
    for (const std::string id : {std::string(kInt64Max), std::string(kUint64Max), std::string("16"),
                                 std::string("-1")}) {
        write_bpe_dir(dir, R"({"a": 0, "b": )" + id + "}");
        expect_error(dir.path(), kSmallVocabRows, {"tokenizer.json", "'b'", id});
    }
}

// Two vocabulary entries with one id: one of them would silently vanish.
TEST(HfTokenizerWriter, DuplicateVocabIdsAreAnError) {
    test::TempDir dir;
    write_bpe_dir(dir, R"({"a": 0, "b": 1, "c": 1})");
    expect_error(dir.path(), kSmallVocabRows, {"tokenizer.json", "'b'", "'c'", "id 1"});
}

// Added tokens past the model's rows are dropped with a warning, however large the id (ids above INT64_MAX
// once read back negative and were refused as invalid); negative ids are an error.
TEST(HfTokenizerWriter, HugeAddedTokenIdsAreDropped) {
    test::TempDir dir;
    write_bpe_dir(dir, R"({"a": 0, "b": 1})",
                  concat(R"([{"id": )", kInt64Max, R"(, "content": "<big>"}, {"id": )", kUint64Max,
                         R"(, "content": "<bigger>"}])"));
    GgufWriter writer;
    std::vector<std::string> warnings;
    add_hf_tokenizer(dir.path(), kSmallVocabRows, writer,
                     [&warnings](const std::string& message) { warnings.push_back(message); });
    ASSERT_EQ(warnings.size(), 2u);
    EXPECT_NE(warnings[0].find(kInt64Max), std::string::npos) << warnings[0];
    EXPECT_NE(warnings[1].find(kUint64Max), std::string::npos) << warnings[1];
    writer.write(dir.file("v.gguf"));
    EXPECT_EQ(GgufFile::open(dir.file("v.gguf"))->get_string_array("tokenizer.ggml.tokens").size(),
              static_cast<size_t>(kSmallVocabRows));

    write_bpe_dir(dir, R"({"a": 0, "b": 1})", R"([{"id": -3, "content": "<neg>"}])");
    expect_error(dir.path(), kSmallVocabRows, {"tokenizer.json", "'<neg>'", "-3"});
}

// Special ids above INT64_MAX were reported as negative numbers.
TEST(HfTokenizerWriter, HugeSpecialIdsAreReportedAsWritten) {
    test::TempDir dir;
    write_bpe_dir(dir, R"({"a": 0, "b": 1})");
    for (const char* id : {kInt64Max, kUint64Max}) {
        std::ofstream(dir.file("config.json")) << concat(R"({"eos_token_id": )", id, "}");
        expect_error(dir.path(), kSmallVocabRows, {"config.json", concat("eos token id ", id, " is out of range")});
    }
}

}  // namespace
}  // namespace dendro
