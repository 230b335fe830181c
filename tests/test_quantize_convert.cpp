// dendro convert --outtype q4_0 / q4_k_m / q5_k_m / q6_k (and q8_0): the per-tensor type rules of
// tools/convert/tensor_types.h (llama.cpp's), and the bundled model's checkpoint converted in each type: the
// types llama.cpp's quantizer gives the same model, general.file_type, and logits close to the f16
// conversion's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "cpu/cpu_backend.h"
#include "format/gguf.h"
#include "model/model.h"
#include "random_model.h"
#include "random_quant_model.h"
#include "run_command.h"
#include "temp_dir.h"
#include "tensor_types.h"
#include "tokenizer/tokenizer.h"

namespace dendro {
namespace {

// --- the rules, tensor by tensor ---

GgmlType type_of(const std::string& name, std::vector<int64_t> ne, OutType out, bool tied = false) {
    return tensor_storage_type(name, ne, out, tied);
}

TEST(TensorTypes, KeptInF32WhateverTheOutType) {
    for (const OutType out : {OutType::F16, OutType::Q8_0, OutType::Q4_0, OutType::Q4_K_M, OutType::Q6_K}) {
        EXPECT_EQ(type_of("blk.0.attn_norm.weight", {256}, out), GgmlType::F32);
        EXPECT_EQ(type_of("output_norm.weight", {256}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_norm.weight", {256, 8}, out), GgmlType::F32);  // Mamba-2's grouped norm
        EXPECT_EQ(type_of("blk.0.ssm_conv1d.weight", {4, 512}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_conv1d.weight", {4, 1, 512}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_conv1d.bias", {512}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_a", {16, 512}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_d", {512}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_dt.bias", {512}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_in.bias", {1024}, out), GgmlType::F32);
        EXPECT_EQ(type_of("blk.0.ssm_in.weight", {256, 1}, out), GgmlType::F32);  // one row: a vector to ggml
    }
}

TEST(TensorTypes, KQuantMixes) {
    // Matrices take the default type; the output, and the embedding when the output is tied to it, Q6_K.
    EXPECT_EQ(type_of("blk.3.ssm_in.weight", {768, 3072}, OutType::Q4_K_M), GgmlType::Q4_K);
    EXPECT_EQ(type_of("blk.3.ssm_x.weight", {1536, 80}, OutType::Q5_K_M), GgmlType::Q5_K);
    EXPECT_EQ(type_of("blk.3.ssm_out.weight", {1536, 768}, OutType::Q6_K), GgmlType::Q6_K);
    EXPECT_EQ(type_of("output.weight", {768, 50280}, OutType::Q4_K_M), GgmlType::Q6_K);
    EXPECT_EQ(type_of("token_embd.weight", {768, 50280}, OutType::Q4_K_M, /*tied=*/true), GgmlType::Q6_K);
    EXPECT_EQ(type_of("token_embd.weight", {768, 50280}, OutType::Q4_K_M, /*tied=*/false), GgmlType::Q4_K);
    EXPECT_EQ(type_of("token_embd.weight", {768, 50280}, OutType::Q5_K_M, /*tied=*/false), GgmlType::Q5_K);
    // Rows that are not whole super-blocks: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16.
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {160, 5120}, OutType::Q4_K_M), GgmlType::Q5_0);  // mamba-2.8b
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {160, 5120}, OutType::Q5_K_M), GgmlType::Q5_1);
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {160, 5120}, OutType::Q6_K), GgmlType::Q8_0);
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {48, 1536}, OutType::Q4_K_M), GgmlType::F16);  // mamba-130m
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {48, 1536}, OutType::Q6_K), GgmlType::F16);
    // An output whose rows are not whole blocks of the default type: Q8_0 (then F16 where that fails too).
    EXPECT_EQ(type_of("output.weight", {96, 1000}, OutType::Q4_K_M), GgmlType::Q8_0);
    EXPECT_EQ(type_of("output.weight", {40, 1000}, OutType::Q4_K_M), GgmlType::F16);
}

TEST(TensorTypes, LegacyAndFloatOutTypes) {
    EXPECT_EQ(type_of("blk.0.ssm_in.weight", {256, 1024}, OutType::Q4_0), GgmlType::Q4_0);
    EXPECT_EQ(type_of("token_embd.weight", {256, 1024}, OutType::Q4_0, /*tied=*/true), GgmlType::Q6_K);
    EXPECT_EQ(type_of("output.weight", {96, 1024}, OutType::Q4_0), GgmlType::Q8_0);  // Q6_K needs 256
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {16, 512}, OutType::Q4_0), GgmlType::F16);
    EXPECT_EQ(type_of("output.weight", {256, 1024}, OutType::Q8_0), GgmlType::Q8_0);
    EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {16, 512}, OutType::Q8_0), GgmlType::F16);
    for (const auto& [out, type] : {std::pair{OutType::F32, GgmlType::F32}, {OutType::F16, GgmlType::F16},
                                    {OutType::BF16, GgmlType::BF16}}) {
        EXPECT_EQ(type_of("output.weight", {256, 1024}, out), type);
        EXPECT_EQ(type_of("blk.0.ssm_dt.weight", {16, 512}, out), type);
    }
}

TEST(TensorTypes, NamesAndFileTypes) {
    // llama_ftype (llama.h): MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15, MOSTLY_Q5_K_M 17, MOSTLY_Q6_K 18.
    for (const auto& [name, ftype] : std::vector<std::pair<std::string, uint32_t>>{
             {"f32", 0}, {"f16", 1}, {"bf16", 32}, {"q8_0", 7}, {"q4_0", 2}, {"q4_k_m", 15}, {"q5_k_m", 17}, {"q6_k", 18}}) {
        const OutType out = parse_out_type(name);
        EXPECT_EQ(out_type_name(out), name);
        EXPECT_EQ(out_type_file_type(out), ftype) << name;
    }
    EXPECT_THROW(parse_out_type("q4_k"), Error);
}

// --- the bundled model's checkpoint, converted ---

const std::string kCheckpoint = std::string(DENDRO_MODELS_DIR) + "/hf/dendro-shakespeare";

// Relative RMS difference of all logits (every position of the prompt, 49 tokens) from the f16
// conversion's, sqrt(sum (l - l_f16)^2 / sum l_f16^2), at most logit_tolerance: 1.5 times what was measured
// on this model (q8_0 0.0083, q6_k 0.0205, q5_k_m 0.0308, q4_k_m 0.0598, q4_0 0.0644; a mis-packed block
// gives differences of the order of the logits themselves). These include the CPU backend's rounding of the
// quantized matrices' inputs to 8 bits (docs/cpu-backend.md), about 0.0065 added in quadrature: with fp32
// inputs the same files measured 0.0051, 0.0155, 0.0283, 0.0579, 0.0633. And the greedy next token agrees
// with f16's at no fewer than top1_agreement of the positions (measured 1, 1, 0.96, 0.96, 0.94).
struct ConvertCase {
    const char* out_type;
    uint32_t file_type;
    GgmlType matrix, output, dt;  // ssm_in/ssm_x/ssm_out, the tied embedding, ssm_dt (rows of dt_rank 16)
    double logit_tolerance;
    double top1_agreement;
};
const ConvertCase kCases[] = {
    {"q8_0", 7, GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::F16, 0.0125, 0.95},
    {"q6_k", 18, GgmlType::Q6_K, GgmlType::Q6_K, GgmlType::F16, 0.031, 0.95},
    {"q5_k_m", 17, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::F16, 0.046, 0.9},
    {"q4_k_m", 15, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::F16, 0.090, 0.9},
    {"q4_0", 2, GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16, 0.097, 0.88},
};

class ConvertedBundledModel : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        for (const char* out : {"f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"}) {
            const std::string path = dir_->file(std::string(out) + ".gguf");
            const test::CommandResult r = test::run_command(std::string(DENDRO_EXE) + " convert " +
                                                            test::shell_quote(kCheckpoint) + " --outtype " + out +
                                                            " -o " + test::shell_quote(path));
            ASSERT_EQ(r.exit_code, 0) << out << ": " << r.err;
        }
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static std::string path(const std::string& out) { return dir_->file(out + ".gguf"); }

    // Logits of every position of the first held-out lines.
    static std::vector<float> logits(const std::string& out_type) {
        const auto model = Model::load(path(out_type));
        const auto file = GgufFile::open(path(out_type));
        const std::vector<int32_t> tokens = Tokenizer::from_gguf(*file)->encode(
            "GREMIO:\nGood morrow, neighbour Baptista.\n\nBAPTISTA:\nGood morrow, neighbour Gremio.\n", true);
        const auto backend = make_cpu_backend(*model, BackendOptions{1, 1});
        const int64_t n_vocab = model->hparams().n_vocab;
        std::vector<float> all(tokens.size() * static_cast<size_t>(n_vocab));
        backend->prefill(0, tokens, all, true);
        return all;
    }
    static test::TempDir* dir_;
};
test::TempDir* ConvertedBundledModel::dir_ = nullptr;

TEST_F(ConvertedBundledModel, TensorTypesAndFileTypeAsLlamaCpps) {
    for (const ConvertCase& c : kCases) {
        SCOPED_TRACE(c.out_type);
        const auto file = GgufFile::open(path(c.out_type));
        EXPECT_EQ(file->get_uint("general.file_type"), c.file_type);
        for (const GgufTensorInfo& t : file->tensors()) {
            const std::string& name = t.name;
            GgmlType expected = GgmlType::F32;
            if (name == "token_embd.weight") expected = c.output;  // tied: the output matrix too
            if (name.ends_with("ssm_in.weight") || name.ends_with("ssm_x.weight") || name.ends_with("ssm_out.weight")) {
                expected = c.matrix;
            }
            if (name.ends_with("ssm_dt.weight")) expected = c.dt;
            EXPECT_EQ(t.type, expected) << name << " is " << ggml_type_name(t.type);
        }
    }
}

TEST_F(ConvertedBundledModel, LogitsCloseToF16s) {
    const std::vector<float> reference = logits("f16");
    const int64_t n_vocab = Model::load(path("f16"))->hparams().n_vocab;
    const size_t n_positions = reference.size() / static_cast<size_t>(n_vocab);
    const auto argmax = [n_vocab](const std::vector<float>& l, size_t position) {
        const auto begin = l.begin() + static_cast<int64_t>(position) * n_vocab;
        return std::max_element(begin, begin + n_vocab) - begin;
    };
    for (const ConvertCase& c : kCases) {
        const std::vector<float> got = logits(c.out_type);
        ASSERT_EQ(got.size(), reference.size());
        double diff = 0, norm = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_TRUE(std::isfinite(got[i])) << c.out_type;
            diff += (static_cast<double>(got[i]) - reference[i]) * (static_cast<double>(got[i]) - reference[i]);
            norm += static_cast<double>(reference[i]) * reference[i];
        }
        size_t agree = 0;
        for (size_t p = 0; p < n_positions; ++p) agree += argmax(got, p) == argmax(reference, p);
        const double relative = std::sqrt(diff / norm);
        EXPECT_LE(relative, c.logit_tolerance) << c.out_type;
        EXPECT_GE(static_cast<double>(agree), c.top1_agreement * static_cast<double>(n_positions)) << c.out_type;
    }
}

// Random models (dendro bench --random-shape --type) store their matrices by the same rules.
TEST(RandomModelTypes, FollowTheOutTypesRules) {
    const test::TempDir dir;
    const ModelHparams hp = test::tiny_hparams_k_quants();  // d_model 256, d_inner 512, dt_rank 16, n_vocab 90
    for (const bool tied : {true, false}) {
        const std::string path = dir.file(tied ? "tied.gguf" : "untied.gguf");
        write_random_mamba_gguf(path, hp, OutType::Q4_K_M, 3, tied);
        const auto file = GgufFile::open(path);
        EXPECT_EQ(file->get_uint("general.file_type"), 15u);
        EXPECT_EQ(file->find_tensor("token_embd.weight")->type, tied ? GgmlType::Q6_K : GgmlType::Q4_K);
        if (!tied) EXPECT_EQ(file->find_tensor("output.weight")->type, GgmlType::Q6_K);
        EXPECT_EQ(file->find_tensor("blk.1.ssm_in.weight")->type, GgmlType::Q4_K);
        EXPECT_EQ(file->find_tensor("blk.1.ssm_dt.weight")->type, GgmlType::F16);
        EXPECT_EQ(file->find_tensor("blk.1.ssm_a")->type, GgmlType::F32);
        std::vector<float> logits(static_cast<size_t>(hp.n_vocab));
        const auto model = Model::load(path);
        make_cpu_backend(*model, BackendOptions{1, 1})->prefill(0, std::vector<int32_t>{1, 2, 3}, logits, false);
        for (const float l : logits) ASSERT_TRUE(std::isfinite(l));
    }
}

TEST(BenchTypes, UnknownTypeListsTheOutTypes) {
    const test::CommandResult r =
        test::run_command(std::string(DENDRO_EXE) + " bench --random-shape 130m --device cpu --type q4_k");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("unknown --type 'q4_k' (expected f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k)"),
              std::string::npos)
        << r.err;
}

}  // namespace
}  // namespace dendro
