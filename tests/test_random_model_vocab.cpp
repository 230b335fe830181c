// Random-weight models as files llama.cpp loads too: every metadata key its "mamba" loader reads, a
// GPT-NeoX-style BPE vocabulary of exactly n_vocab distinct tokens with merges, and Dendro's tokenizer on it
// (round trips, merges used); general.file_type after the matrix type.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/error.h"
#include "format/gguf.h"
#include "random_model_file.h"
#include "synthetic_vocab.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_gguf.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro {
namespace {

// A tiny Mamba with the published models' vocabulary size (GPT-NeoX-20B's padded, as in mamba-130m).
constexpr int64_t kMambaVocab = 50280;

ModelHparams tiny_with_mamba_vocab() {
    ModelHparams hp = test::tiny_hparams_q8();
    hp.n_vocab = kMambaVocab;
    return hp;
}

RandomModelOptions bpe_options() {
    RandomModelOptions options;
    options.bpe_vocabulary = true;
    return options;
}

class RandomModelBpeVocab : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        file_ = new test::TempModelFile(tiny_with_mamba_vocab(), GgmlType::F16, 1, true, bpe_options());
        loaded_ = new test::LoadedTokenizer(test::load_tokenizer(file_->path()));
    }
    static void TearDownTestSuite() {
        delete loaded_;
        delete file_;
    }
    static const GgufFile& gguf() { return *loaded_->file; }
    static const Tokenizer& tok() { return *loaded_->tokenizer; }

    static test::TempModelFile* file_;
    static test::LoadedTokenizer* loaded_;
};
test::TempModelFile* RandomModelBpeVocab::file_ = nullptr;
test::LoadedTokenizer* RandomModelBpeVocab::loaded_ = nullptr;

TEST_F(RandomModelBpeVocab, HasEveryKeyLlamaCppsMambaLoaderReads) {
    const ModelHparams hp = tiny_with_mamba_vocab();
    EXPECT_EQ(gguf().get_string("general.architecture"), "mamba");
    EXPECT_EQ(gguf().get_uint("mamba.context_length"), 1u << 20);
    EXPECT_EQ(gguf().get_uint("mamba.embedding_length"), static_cast<uint64_t>(hp.d_model));
    EXPECT_EQ(gguf().get_uint("mamba.feed_forward_length"), 0u);
    EXPECT_EQ(gguf().get_uint("mamba.attention.head_count"), 0u);
    EXPECT_EQ(gguf().get_uint("mamba.block_count"), static_cast<uint64_t>(hp.n_layer));
    EXPECT_EQ(gguf().get_uint("mamba.ssm.conv_kernel"), static_cast<uint64_t>(hp.d_conv));
    EXPECT_EQ(gguf().get_uint("mamba.ssm.inner_size"), static_cast<uint64_t>(hp.d_inner));
    EXPECT_EQ(gguf().get_uint("mamba.ssm.state_size"), static_cast<uint64_t>(hp.d_state));
    EXPECT_EQ(gguf().get_uint("mamba.ssm.time_step_rank"), static_cast<uint64_t>(hp.dt_rank));
    EXPECT_FLOAT_EQ(static_cast<float>(gguf().get_float("mamba.attention.layer_norm_rms_epsilon")), hp.norm_eps);
    EXPECT_FALSE(gguf().get_bool("mamba.ssm.dt_b_c_rms"));
    EXPECT_EQ(gguf().get_uint("general.file_type"), 1u);  // LLAMA_FTYPE_MOSTLY_F16
    EXPECT_EQ(gguf().get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(gguf().get_string("tokenizer.ggml.pre"), "gpt-2");
    EXPECT_EQ(gguf().get_uint("tokenizer.ggml.bos_token_id"), 0u);
    EXPECT_EQ(gguf().get_uint("tokenizer.ggml.eos_token_id"), 0u);
}

TEST_F(RandomModelBpeVocab, VocabularyHasNVocabDistinctTokensAndMerges) {
    const std::vector<std::string>& tokens = gguf().get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(static_cast<int64_t>(tokens.size()), kMambaVocab);
    EXPECT_EQ(static_cast<int64_t>(gguf().get_int_array("tokenizer.ggml.token_type").size()), kMambaVocab);
    // llama.cpp's loader asserts that no two tokens share a text.
    EXPECT_EQ(static_cast<int64_t>(std::set<std::string>(tokens.begin(), tokens.end()).size()), kMambaVocab);
    EXPECT_EQ(static_cast<int64_t>(gguf().get_string_array("tokenizer.ggml.merges").size()),
              kMambaVocab - kSyntheticBpeMinVocab);
    EXPECT_EQ(gguf().find_tensor("token_embd.weight")->ne[1], kMambaVocab);
    EXPECT_EQ(tok().n_vocab(), kMambaVocab);
    EXPECT_EQ(tok().token_text(0), "<|endoftext|>");
    EXPECT_EQ(tok().eos(), 0);
}

TEST_F(RandomModelBpeVocab, TokenizerRoundTripsTextAndUsesTheMerges) {
    const std::string words = "hello world, the quick brown fox\n";
    const std::vector<int32_t> ids = tok().encode(words, false);
    EXPECT_LT(ids.size(), words.size() * 2 / 3) << "merges should join letters";
    EXPECT_EQ(tok().decode(ids), words);
    EXPECT_EQ(tok().token_bytes(tok().encode(" ab", false).at(0)), " ab");

    const std::string sample = test::read_text(test::fixture_path("hard_sample.txt"));
    EXPECT_EQ(tok().decode(tok().encode(sample, false)), sample);  // "gpt-2": no normalization
    const std::string shakespeare = test::read_text(test::test_data_path("text/tinyshakespeare.txt"));
    EXPECT_EQ(tok().decode(tok().encode(shakespeare, false)), shakespeare);
    EXPECT_EQ(tok().encode("<|endoftext|>", false), std::vector<int32_t>{0});
}

TEST(RandomModelVocab, SmallestBpeVocabularyHasNoMerges) {
    ModelHparams hp = test::tiny_hparams_byte_vocab();
    hp.n_vocab = kSyntheticBpeMinVocab;
    const test::TempModelFile file(hp, GgmlType::F32, 1, true, bpe_options());
    const test::LoadedTokenizer loaded = test::load_tokenizer(file.path());
    EXPECT_TRUE(loaded.file->get_string_array("tokenizer.ggml.merges").empty());
    EXPECT_EQ(loaded.tokenizer->decode(loaded.tokenizer->encode("ab c", false)), "ab c");
}

void expect_write_error(const ModelHparams& hp, const RandomModelOptions& options, const std::string& needle) {
    test::TempDir dir;
    try {
        write_random_mamba_gguf(dir.file("m.gguf"), hp, GgmlType::F32, 1, true, options);
        ADD_FAILURE() << "no error, expected " << needle;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(RandomModelVocab, TooSmallOrTwoVocabulariesAreErrors) {
    ModelHparams hp = test::tiny_hparams_byte_vocab();
    hp.n_vocab = kSyntheticBpeMinVocab - 1;
    expect_write_error(hp, bpe_options(), "a synthetic BPE vocabulary needs n_vocab >= 257, got 256");
    RandomModelOptions both = bpe_options();
    both.byte_tokenizer = true;
    expect_write_error(test::tiny_hparams_byte_vocab(), both, "at most one vocabulary");
}

TEST(RandomModelVocab, FileTypeFollowsTheMatrixType) {
    // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
    for (const auto& [type, file_type] : {std::pair{GgmlType::F32, 0u}, std::pair{GgmlType::F16, 1u},
                                          std::pair{GgmlType::Q8_0, 7u}, std::pair{GgmlType::BF16, 32u}}) {
        const test::TempModelFile file(test::tiny_hparams_q8(), type);
        EXPECT_EQ(GgufFile::open(file.path())->get_uint("general.file_type"), file_type) << ggml_type_name(type);
    }
}

}  // namespace
}  // namespace dendro
