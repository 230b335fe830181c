// dendro convert for HF Mamba2ForCausalLM: the GGUF has llama.cpp's "mamba2" keys, tensor names, shapes,
// types and transforms (A = -exp(A_log) as {1, n_head}, D {1, n_head}, the gated norm {d_inner/n_group,
// n_group}, the conv squeezed), time_step_limit in Dendro's keys, a Codestral directory as published
// (sharded weights, config.json with Infinity, tokenizer.model.v3) converts; and every config.json key the
// math depends on is checked, what Dendro cannot honour refused with one error line naming the key.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert_cli.h"
#include "format/ggml_types.h"
#include "format/gguf.h"
#include "hf_reference.h"
#include "model/model.h"
#include "safetensors.h"
#include "temp_dir.h"
#include "tokenizer/vocab.h"

namespace dendro {
namespace {

namespace fs = std::filesystem;
using test::copy_fixture;
using test::edit_config;
using test::edit_weights;
using test::expect_failure;

const std::string kMistralTokenizer = std::string(DENDRO_TEST_DATA) + "/tokenizers/mistral-v3";

// mamba2_groups_spm: d_model 24, d_inner 48 = 4 heads x 12, 2 groups, d_state 12, d_conv 3, use_bias, no conv
// bias, untied, SentencePiece vocabulary of 500 padded to 512 embedding rows.
constexpr int64_t kGroupsInProjRows = 2 * 48 + 2 * 2 * 12 + 4;
constexpr int64_t kGroupsConvDim = 48 + 2 * 2 * 12;
constexpr int64_t kGroupsTensorsPerLayer = 10;  // no ssm_conv1d.bias

std::unique_ptr<GgufFile> convert_dir(const std::string& dir, const std::string& outtype, const test::TempDir& tmp,
                                      const std::string& extra = "") {
    const std::string out = tmp.file(fs::path(dir).filename().string() + "-" + outtype + ".gguf");
    const test::CommandResult r = test::convert(dir, out, "--outtype " + outtype + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("wrote"), std::string::npos) << r.out;
    return GgufFile::open(out);
}

std::unique_ptr<GgufFile> convert_fixture(const std::string& fixture, const std::string& outtype,
                                          const test::TempDir& tmp, const std::string& extra = "") {
    return convert_dir(test::hf_fixture_dir(fixture), outtype, tmp, extra);
}

void expect_u32(const GgufFile& file, const std::string& key, uint64_t expected) {
    const GgufValue* v = file.find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, GgufType::UINT32) << key;
    EXPECT_EQ(file.get_uint(key), expected) << key;
}

void expect_tensor(const GgufFile& file, const std::string& name, GgmlType type, std::vector<int64_t> ne) {
    const GgufTensorInfo* t = file.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, type) << name << " is " << ggml_type_name(t->type);
    EXPECT_EQ(t->ne, ne) << name << " is " << t->shape_string();
}

std::vector<float> f32_values(std::span<const uint8_t> bytes) {
    std::vector<float> values(bytes.size() / sizeof(float));
    std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
    return values;
}

TEST(ConvertMamba2, MetadataKeysAsLlamaCpp) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba2_groups_spm", "f16", tmp);
    EXPECT_EQ(file->get_string("general.architecture"), "mamba2");
    EXPECT_EQ(file->get_string("general.type"), "model");
    EXPECT_EQ(file->get_string("general.name"), "mamba2_groups_spm");
    expect_u32(*file, "general.file_type", 1);  // LLAMA_FTYPE_MOSTLY_F16
    expect_u32(*file, "general.quantization_version", 2);
    expect_u32(*file, "mamba2.context_length", 1u << 20);
    expect_u32(*file, "mamba2.embedding_length", 24);
    expect_u32(*file, "mamba2.feed_forward_length", 0);
    expect_u32(*file, "mamba2.attention.head_count", 0);
    expect_u32(*file, "mamba2.block_count", 2);
    expect_u32(*file, "mamba2.ssm.conv_kernel", 3);
    expect_u32(*file, "mamba2.ssm.inner_size", 48);
    expect_u32(*file, "mamba2.ssm.state_size", 12);
    expect_u32(*file, "mamba2.ssm.time_step_rank", 4);  // the head count
    expect_u32(*file, "mamba2.ssm.group_count", 2);
    ASSERT_NE(file->find("mamba2.attention.layer_norm_rms_epsilon"), nullptr);
    EXPECT_EQ(file->find("mamba2.attention.layer_norm_rms_epsilon")->type, GgufType::FLOAT32);
    EXPECT_FLOAT_EQ(static_cast<float>(file->get_float("mamba2.attention.layer_norm_rms_epsilon")), 1e-5f);
    // Unlimited time steps: no Dendro keys (llama.cpp's files have none either).
    EXPECT_EQ(file->find(kTimeStepMinKey), nullptr);
    EXPECT_EQ(file->find(kTimeStepMaxKey), nullptr);
    EXPECT_EQ(file->find("mamba.ssm.dt_b_c_rms"), nullptr);
    // 500 SentencePiece pieces padded to the 512 embedding rows.
    const std::vector<std::string>& tokens = file->get_string_array(vocab_key::kTokens);
    ASSERT_EQ(tokens.size(), 512u);
    EXPECT_EQ(tokens[511], "[PAD511]");
    EXPECT_EQ(file->get_string(vocab_key::kModel), "llama");
}

TEST(ConvertMamba2, TensorNamesShapesAndTypes) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba2_groups_spm", "f16", tmp);
    expect_tensor(*file, "token_embd.weight", GgmlType::F16, {24, 512});
    for (const int il : {0, 1}) {
        const auto blk = [il](const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; };
        expect_tensor(*file, blk("attn_norm.weight"), GgmlType::F32, {24});
        expect_tensor(*file, blk("ssm_in.weight"), GgmlType::F16, {24, kGroupsInProjRows});
        expect_tensor(*file, blk("ssm_in.bias"), GgmlType::F32, {kGroupsInProjRows});
        expect_tensor(*file, blk("ssm_conv1d.weight"), GgmlType::F32, {3, kGroupsConvDim});
        EXPECT_EQ(file->find_tensor(blk("ssm_conv1d.bias")), nullptr);
        expect_tensor(*file, blk("ssm_dt.bias"), GgmlType::F32, {4});
        expect_tensor(*file, blk("ssm_a"), GgmlType::F32, {1, 4});
        expect_tensor(*file, blk("ssm_d"), GgmlType::F32, {1, 4});
        expect_tensor(*file, blk("ssm_norm.weight"), GgmlType::F32, {24, 2});
        expect_tensor(*file, blk("ssm_out.weight"), GgmlType::F16, {48, 24});
        expect_tensor(*file, blk("ssm_out.bias"), GgmlType::F32, {24});
    }
    expect_tensor(*file, "output_norm.weight", GgmlType::F32, {24});
    expect_tensor(*file, "output.weight", GgmlType::F16, {24, 512});
    EXPECT_EQ(file->find_tensor("blk.2.attn_norm.weight"), nullptr);
    EXPECT_EQ(file->tensors().size(), 3u + 2u * kGroupsTensorsPerLayer);
}

TEST(ConvertMamba2, TiedOutputAndQ8_0Types) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba2_tied_bpe", "q8_0", tmp);
    // d_model 32, d_inner 64 = 8 heads x 8, 1 group, d_state 16, conv bias, no projection biases.
    constexpr int64_t kInRows = 2 * 64 + 2 * 16 + 8, kConvDim = 64 + 2 * 16;
    expect_tensor(*file, "token_embd.weight", GgmlType::Q8_0, {32, 512});
    expect_tensor(*file, "blk.0.ssm_in.weight", GgmlType::Q8_0, {32, kInRows});
    expect_tensor(*file, "blk.0.ssm_conv1d.weight", GgmlType::F32, {4, kConvDim});
    expect_tensor(*file, "blk.0.ssm_conv1d.bias", GgmlType::F32, {kConvDim});
    expect_tensor(*file, "blk.0.ssm_norm.weight", GgmlType::F32, {64, 1});
    expect_tensor(*file, "blk.0.ssm_out.weight", GgmlType::Q8_0, {64, 32});
    EXPECT_EQ(file->find_tensor("blk.0.ssm_in.bias"), nullptr);
    EXPECT_EQ(file->find_tensor("blk.0.ssm_out.bias"), nullptr);
    EXPECT_EQ(file->find_tensor("output.weight"), nullptr);  // tie_word_embeddings
    expect_u32(*file, "general.file_type", 7);               // LLAMA_FTYPE_MOSTLY_Q8_0
}

TEST(ConvertMamba2, TransformsMatchTheCheckpoint) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba2_groups_spm", "f32", tmp);
    const auto source = SafetensorsFile::open(test::hf_fixture_dir("mamba2_groups_spm") + "/model.safetensors");
    const std::vector<float> a_log = f32_values(source->find("backbone.layers.1.mixer.A_log")->data);
    const GgufTensorInfo& a = *file->find_tensor("blk.1.ssm_a");
    const std::vector<float> a_values = f32_values({a.data, a.nbytes});
    ASSERT_EQ(a_values.size(), a_log.size());
    for (size_t i = 0; i < a_log.size(); ++i) EXPECT_FLOAT_EQ(a_values[i], -std::exp(a_log[i])) << i;

    // Reshaped tensors keep their elements in order: bit-for-bit copies.
    for (const auto& [gguf_name, hf_name] : std::vector<std::pair<std::string, std::string>>{
             {"blk.1.ssm_conv1d.weight", "backbone.layers.1.mixer.conv1d.weight"},
             {"blk.1.ssm_norm.weight", "backbone.layers.1.mixer.norm.weight"},
             {"blk.1.ssm_d", "backbone.layers.1.mixer.D"},
             {"blk.1.ssm_dt.bias", "backbone.layers.1.mixer.dt_bias"},
             {"blk.1.ssm_in.weight", "backbone.layers.1.mixer.in_proj.weight"},
             {"blk.1.ssm_in.bias", "backbone.layers.1.mixer.in_proj.bias"},
             {"output.weight", "lm_head.weight"}}) {
        const SafetensorsTensor& src = *source->find(hf_name);
        const GgufTensorInfo& dst = *file->find_tensor(gguf_name);
        ASSERT_EQ(dst.nbytes, src.data.size()) << gguf_name;
        EXPECT_EQ(std::memcmp(dst.data, src.data.data(), dst.nbytes), 0) << gguf_name;
    }
}

TEST(ConvertMamba2, TimeStepLimitInDendroKeys) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba2_dtlimit_bpe", "f32", tmp);
    ASSERT_NE(file->find(kTimeStepMinKey), nullptr);
    EXPECT_EQ(file->find(kTimeStepMinKey)->type, GgufType::FLOAT32);
    EXPECT_FLOAT_EQ(static_cast<float>(file->get_float(kTimeStepMinKey)), 0.02f);
    EXPECT_FLOAT_EQ(static_cast<float>(file->get_float(kTimeStepMaxKey)), 0.2f);
    const auto model = Model::load(tmp.file("mamba2_dtlimit_bpe-f32.gguf"));
    EXPECT_FLOAT_EQ(model->hparams().time_step_min, 0.02f);
    EXPECT_FLOAT_EQ(model->hparams().time_step_max, 0.2f);
    // Only one bound: both keys, the other at its unlimited value.
    const std::string dir = copy_fixture("mamba2_dtlimit_bpe", tmp);
    edit_config(dir, [](nlohmann::json& c) { c["time_step_limit"] = {0.0, 0.3}; });
    const auto upper = convert_dir(dir, "f32", tmp);
    EXPECT_EQ(upper->get_float(kTimeStepMinKey), 0.0);
    EXPECT_FLOAT_EQ(static_cast<float>(upper->get_float(kTimeStepMaxKey)), 0.3f);
}

// Mamba-Codestral-7B-v0.1 as published: three safetensors shards with an index, a config.json with keys
// transformers 5 no longer has and a bare Infinity, the SentencePiece tokenizer.model.v3 with its control
// tokens, n_groups 8, an untied head and 32,768 rows.
TEST(ConvertMamba2, CodestralDirectoryAsPublished) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba2_codestral_v3", tmp);
    fs::copy_file(kMistralTokenizer + "/tokenizer.model.v3", dir + "/tokenizer.model.v3");
    {
        std::ifstream in(dir + "/config.json");
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        ASSERT_NE(text.find("Infinity"), std::string::npos);
        ASSERT_NE(text.find("\"rms_norm\": true"), std::string::npos);
    }
    const auto file = convert_dir(dir, "bf16", tmp);
    expect_u32(*file, "mamba2.ssm.group_count", 8);
    expect_u32(*file, "mamba2.ssm.time_step_rank", 16);
    EXPECT_EQ(file->find(kTimeStepMaxKey), nullptr);  // [0.0, Infinity]: unlimited
    expect_tensor(*file, "output.weight", GgmlType::BF16, {8, 32768});
    expect_tensor(*file, "blk.1.ssm_norm.weight", GgmlType::F32, {2, 8});
    EXPECT_EQ(file->get_string(vocab_key::kModel), "llama");
    const std::vector<std::string>& tokens = file->get_string_array(vocab_key::kTokens);
    ASSERT_EQ(tokens.size(), 32768u);
    EXPECT_EQ(tokens[3], "[INST]");
    EXPECT_EQ(file->get_float_array(vocab_key::kScores).size(), 32768u);
    EXPECT_EQ(file->get_int_array(vocab_key::kTokenType).at(3), static_cast<int64_t>(TokenType::Control));
    EXPECT_EQ(file->get_uint(vocab_key::kBosId), 1u);
    EXPECT_EQ(file->get_uint(vocab_key::kEosId), 2u);
}

// chunk_size only orders HF's prefill sums, residual_in_fp32 is moot in fp32, and transformers' Mamba2 never
// reads norm_before_gate (Codestral's config.json has it true): none of them changes the file.
TEST(ConvertMamba2, ChunkSizeResidualInFp32AndNormBeforeGateChangeNothing) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba2_tied_bpe", tmp);
    const std::string first = tmp.file("first.gguf"), second = tmp.file("second.gguf");
    ASSERT_EQ(test::convert(dir, first, "--outtype f32").exit_code, 0);
    edit_config(dir, [](nlohmann::json& c) {
        c["chunk_size"] = 1;
        c["residual_in_fp32"] = false;
        c["norm_before_gate"] = true;
        c["rms_norm"] = true;
    });
    const test::CommandResult r = test::convert(dir, second, "--outtype f32");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(test::read_file(first), test::read_file(second));
}

TEST(ConvertMamba2, TimeStepLimitSpellings) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba2_tied_bpe", tmp);
    // transformers 5 writes {"__float__": "Infinity"} (this fixture's own config.json).
    ASSERT_EQ(nlohmann::json::parse(std::ifstream(dir + "/config.json"))["time_step_limit"][1]["__float__"], "Infinity");
    EXPECT_EQ(convert_dir(dir, "f32", tmp)->find(kTimeStepMaxKey), nullptr);
    edit_config(dir, [](nlohmann::json& c) { c.erase("time_step_limit"); });
    EXPECT_EQ(convert_dir(dir, "f32", tmp)->find(kTimeStepMaxKey), nullptr);
    edit_config(dir, [](nlohmann::json& c) { c["time_step_limit"] = {0.001, nlohmann::json{{"__float__", "Infinity"}}}; });
    const auto lower = convert_dir(dir, "f32", tmp);
    EXPECT_FLOAT_EQ(static_cast<float>(lower->get_float(kTimeStepMinKey)), 0.001f);
    EXPECT_EQ(lower->get_float(kTimeStepMaxKey), std::numeric_limits<double>::infinity());
}

// --- refusals ---------------------------------------------------------------------------------------------

class ConvertMamba2Errors : public ::testing::Test {
protected:
    // A fresh copy of mamba2_groups_spm, with config.json edited.
    std::string fresh_copy() {
        copies_.push_back(std::make_unique<test::TempDir>());
        return copy_fixture("mamba2_groups_spm", *copies_.back());
    }
    std::string with_config(const std::function<void(nlohmann::json&)>& edit) {
        const std::string dir = fresh_copy();
        edit_config(dir, edit);
        return dir;
    }

private:
    std::vector<std::unique_ptr<test::TempDir>> copies_;
};

// Ignored, but still a flag: another type is an error naming it.
TEST_F(ConvertMamba2Errors, NormBeforeGateOfTheWrongType) {
    expect_failure(with_config([](nlohmann::json& c) { c["norm_before_gate"] = "yes"; }), {"config.json", "norm_before_gate"});
}

TEST_F(ConvertMamba2Errors, LayerNormInsteadOfRmsNorm) {
    expect_failure(with_config([](nlohmann::json& c) { c["rms_norm"] = false; }), {"config.json", "rms_norm false"});
}

TEST_F(ConvertMamba2Errors, NonSiluActivation) {
    expect_failure(with_config([](nlohmann::json& c) { c["hidden_act"] = "gelu"; }), {"hidden_act 'gelu'"});
}

TEST_F(ConvertMamba2Errors, HeadsTimesHeadDimMustBeInnerSize) {
    expect_failure(with_config([](nlohmann::json& c) { c["head_dim"] = 10; }),
                   {"num_heads 4 * head_dim 10 must equal expand * hidden_size = 48"});
}

TEST_F(ConvertMamba2Errors, GroupsMustDivideHeads) {
    expect_failure(with_config([](nlohmann::json& c) { c["n_groups"] = 3; }), {"num_heads 4", "n_groups 3"});
}

TEST_F(ConvertMamba2Errors, IntermediateSizeDisagreeingWithExpand) {
    expect_failure(with_config([](nlohmann::json& c) { c["intermediate_size"] = 96; }),
                   {"'intermediate_size' = 96", "expand * hidden_size = 48"});
}

TEST_F(ConvertMamba2Errors, BadTimeStepLimits) {
    for (const nlohmann::json& limit : {nlohmann::json{0.2, 0.1}, nlohmann::json{-0.1, 1.0}, nlohmann::json{0.1},
                                        nlohmann::json{"NaN", 1.0}, nlohmann::json("wide")}) {
        expect_failure(with_config([&limit](nlohmann::json& c) { c["time_step_limit"] = limit; }),
                       {"config.json", "time_step_limit"});
    }
}

TEST_F(ConvertMamba2Errors, BiasFlagsDisagreeWithWeights) {
    expect_failure(with_config([](nlohmann::json& c) { c["use_conv_bias"] = true; }),
                   {"backbone.layers.0.mixer.conv1d.bias", "use_conv_bias true"});
    expect_failure(with_config([](nlohmann::json& c) { c["use_bias"] = false; }),
                   {"backbone.layers.0.mixer.in_proj.bias", "use_bias false"});
}

TEST_F(ConvertMamba2Errors, ShapesFollowConfig) {
    // d_state 10: in_proj has 2 * 2 * 2 rows fewer than the weights.
    expect_failure(with_config([](nlohmann::json& c) { c["state_size"] = 10; }),
                   {"backbone.layers.0.mixer.in_proj.weight", "[148, 24]", "expected [140, 24]"});
    expect_failure(with_config([](nlohmann::json& c) { c["conv_kernel"] = 4; }),
                   {"backbone.layers.0.mixer.conv1d.weight", "expected [96, 1, 4]"});
    expect_failure(with_config([](nlohmann::json& c) { c["num_hidden_layers"] = 1; }),
                   {"unexpected tensor 'backbone.layers.1."});
    expect_failure(with_config([](nlohmann::json& c) { c["vocab_size"] = 520; }),
                   {"backbone.embeddings.weight", "expected [520, 24]"});
}

// A tensor stored under another name (its bytes stay, so the file itself is sound).
void rename_tensor(const std::string& dir, const std::string& from, const std::string& to) {
    edit_weights(dir, [&](test::SafetensorsBuilder& b) {
        b.header()[to] = b.header()[from];
        b.header().erase(from);
    });
}

TEST_F(ConvertMamba2Errors, MissingTensors) {
    const std::string dir = fresh_copy();
    rename_tensor(dir, "backbone.layers.1.mixer.dt_bias", "backbone.layers.1.mixer.dt_proj.bias");
    expect_failure(dir, {"no tensor 'backbone.layers.1.mixer.dt_bias'", "[4]"});
    const std::string untied = fresh_copy();
    rename_tensor(untied, "lm_head.weight", "head.weight");
    expect_failure(untied, {"lm_head.weight", "tie_word_embeddings false"});
}

TEST_F(ConvertMamba2Errors, TooLargeDimensions) {
    expect_failure(with_config([](nlohmann::json& c) { c["state_size"] = 4294967295LL; }),
                   {"n_groups 2 * state_size 4294967295", "in_proj"});
    expect_failure(with_config([](nlohmann::json& c) { c["num_heads"] = 4294967296LL; }), {"'num_heads'", "out of range"});
}

}  // namespace
}  // namespace dendro
