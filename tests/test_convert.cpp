// dendro convert: the GGUF it writes has llama.cpp's metadata keys, value types, tensor names, shapes, types
// and transforms (A = -exp(A_log), squeezed conv1d, Q8_0 blocks laid out as ggml's); and bad checkpoints
// fail with one clear error line, a non-zero exit, and no output file (an existing one is left alone).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "model/model.h"
#include "convert_cli.h"
#include "run_command.h"
#include "safetensors.h"
#include "safetensors_builder.h"
#include "temp_dir.h"

namespace dendro {
namespace {

namespace fs = std::filesystem;

const std::string kHfDir = std::string(DENDRO_TEST_DATA) + "/hf/";

using test::convert;
using test::copy_fixture;
using test::edit_config;
using test::edit_weights;
using test::expect_failure;

std::unique_ptr<GgufFile> convert_fixture(const std::string& fixture, const std::string& outtype,
                                          const test::TempDir& tmp) {
    const std::string out = tmp.file(fixture + ".gguf");
    const test::CommandResult r = convert(kHfDir + fixture, out, "--outtype " + outtype);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("wrote"), std::string::npos) << r.out;
    return GgufFile::open(out);
}

const GgufValue& value(const GgufFile& file, const std::string& key) {
    const GgufValue* v = file.find(key);
    if (!v) throw std::runtime_error("missing key " + key);
    return *v;
}

void expect_u32(const GgufFile& file, const std::string& key, uint64_t expected) {
    EXPECT_EQ(value(file, key).type, GgufType::UINT32) << key;
    EXPECT_EQ(file.get_uint(key), expected) << key;
}

const GgufTensorInfo& tensor(const GgufFile& file, const std::string& name) {
    const GgufTensorInfo* t = file.find_tensor(name);
    if (!t) throw std::runtime_error("missing tensor " + name);
    return *t;
}

void expect_tensor(const GgufFile& file, const std::string& name, GgmlType type, std::vector<int64_t> ne) {
    const GgufTensorInfo& t = tensor(file, name);
    EXPECT_EQ(t.type, type) << name << " is " << ggml_type_name(t.type);
    EXPECT_EQ(t.ne, ne) << name << " is " << t.shape_string();
}

std::vector<float> source_floats(const SafetensorsTensor& t) {
    EXPECT_EQ(t.dtype, "F32");
    std::vector<float> values(static_cast<size_t>(t.n_elements()));
    std::memcpy(values.data(), t.data.data(), t.data.size());
    return values;
}

TEST(Convert, MetadataKeysAndTypesAsLlamaCpp) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba_tied_bpe", "f16", tmp);
    EXPECT_EQ(file->get_string("general.architecture"), "mamba");
    EXPECT_EQ(file->get_string("general.type"), "model");
    EXPECT_EQ(file->get_string("general.name"), "mamba_tied_bpe");
    expect_u32(*file, "general.file_type", 1);  // LLAMA_FTYPE_MOSTLY_F16
    expect_u32(*file, "general.quantization_version", 2);
    expect_u32(*file, "mamba.context_length", 1u << 20);
    expect_u32(*file, "mamba.embedding_length", 32);
    expect_u32(*file, "mamba.feed_forward_length", 0);
    expect_u32(*file, "mamba.attention.head_count", 0);
    expect_u32(*file, "mamba.block_count", 2);
    expect_u32(*file, "mamba.ssm.conv_kernel", 4);
    expect_u32(*file, "mamba.ssm.inner_size", 64);
    expect_u32(*file, "mamba.ssm.state_size", 16);
    expect_u32(*file, "mamba.ssm.time_step_rank", 2);
    EXPECT_EQ(value(*file, "mamba.attention.layer_norm_rms_epsilon").type, GgufType::FLOAT32);
    EXPECT_FLOAT_EQ(static_cast<float>(file->get_float("mamba.attention.layer_norm_rms_epsilon")), 1e-5f);
    EXPECT_EQ(value(*file, "mamba.ssm.dt_b_c_rms").type, GgufType::BOOL);
    EXPECT_FALSE(file->get_bool("mamba.ssm.dt_b_c_rms"));
    EXPECT_EQ(file->find(kMixerRmsEpsKey), nullptr);
    EXPECT_EQ(file->get_string_array("tokenizer.ggml.tokens").size(), 512u);
}

TEST(Convert, FileTypeFollowsOuttype) {
    const test::TempDir tmp;
    // llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7, MOSTLY_BF16 = 32.
    for (const auto& [outtype, ftype] : std::vector<std::pair<std::string, uint64_t>>{{"f32", 0}, {"bf16", 32}, {"q8_0", 7}}) {
        const std::string out = tmp.file(outtype + ".gguf");
        ASSERT_EQ(convert(kHfDir + "mamba_tied_bpe", out, "--outtype " + outtype).exit_code, 0);
        expect_u32(*GgufFile::open(out), "general.file_type", ftype);
    }
}

TEST(Convert, FalconMambaKeys) {
    const test::TempDir tmp;
    const auto file = convert_fixture("falcon_mamba_bpe", "f32", tmp);
    EXPECT_TRUE(file->get_bool("mamba.ssm.dt_b_c_rms"));
    EXPECT_EQ(value(*file, kMixerRmsEpsKey).type, GgufType::FLOAT32);
    EXPECT_FLOAT_EQ(static_cast<float>(file->get_float(kMixerRmsEpsKey)), 1e-6f);
    expect_tensor(*file, "output.weight", GgmlType::F32, {32, 512});
}

TEST(Convert, Q8_0TensorTypesAndFallbacks) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba_tied_bpe", "q8_0", tmp);
    // d_model 32, d_inner 64, d_state 16, dt_rank 2, d_conv 4, vocab 512.
    expect_tensor(*file, "token_embd.weight", GgmlType::Q8_0, {32, 512});
    expect_tensor(*file, "blk.0.attn_norm.weight", GgmlType::F32, {32});
    expect_tensor(*file, "blk.0.ssm_in.weight", GgmlType::Q8_0, {32, 128});
    expect_tensor(*file, "blk.0.ssm_conv1d.weight", GgmlType::F32, {4, 64});
    expect_tensor(*file, "blk.0.ssm_conv1d.bias", GgmlType::F32, {64});
    expect_tensor(*file, "blk.0.ssm_x.weight", GgmlType::Q8_0, {64, 34});
    expect_tensor(*file, "blk.0.ssm_dt.weight", GgmlType::F16, {2, 64});  // rows of 2: not whole Q8_0 blocks
    expect_tensor(*file, "blk.0.ssm_dt.bias", GgmlType::F32, {64});
    expect_tensor(*file, "blk.0.ssm_a", GgmlType::F32, {16, 64});
    expect_tensor(*file, "blk.0.ssm_d", GgmlType::F32, {64});
    expect_tensor(*file, "blk.0.ssm_out.weight", GgmlType::Q8_0, {64, 32});
    expect_tensor(*file, "output_norm.weight", GgmlType::F32, {32});
    EXPECT_EQ(file->find_tensor("output.weight"), nullptr);  // tied
    EXPECT_EQ(file->find_tensor("blk.0.ssm_in.bias"), nullptr);
    EXPECT_EQ(file->find_tensor("blk.2.attn_norm.weight"), nullptr);
    EXPECT_EQ(file->tensors().size(), 2u + 2u * 10u);
}

TEST(Convert, BiasesAndUntiedOutput) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba_untied_spm", "bf16", tmp);
    // d_model 48, d_inner 144, d_state 4, dt_rank 5, d_conv 3, vocab 500, use_bias, no conv bias.
    expect_tensor(*file, "blk.1.ssm_in.weight", GgmlType::BF16, {48, 288});
    expect_tensor(*file, "blk.1.ssm_in.bias", GgmlType::F32, {288});
    expect_tensor(*file, "blk.1.ssm_out.bias", GgmlType::F32, {48});
    expect_tensor(*file, "blk.1.ssm_conv1d.weight", GgmlType::F32, {3, 144});
    EXPECT_EQ(file->find_tensor("blk.1.ssm_conv1d.bias"), nullptr);
    expect_tensor(*file, "blk.1.ssm_x.weight", GgmlType::BF16, {144, 13});
    expect_tensor(*file, "output.weight", GgmlType::BF16, {48, 500});
}

TEST(Convert, TransformsMatchTheCheckpoint) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba_tied_bpe", "f32", tmp);
    const auto source = SafetensorsFile::open(kHfDir + "mamba_tied_bpe/model.safetensors");

    const std::vector<float> a_log = source_floats(*source->find("backbone.layers.1.mixer.A_log"));
    const GgufTensorInfo& a = tensor(*file, "blk.1.ssm_a");
    ASSERT_EQ(a.nbytes, a_log.size() * sizeof(float));
    std::vector<float> a_values(a_log.size());
    std::memcpy(a_values.data(), a.data, a.nbytes);
    for (size_t i = 0; i < a_log.size(); ++i) EXPECT_FLOAT_EQ(a_values[i], -std::exp(a_log[i])) << i;

    // Unchanged tensors are copied bit for bit (conv1d only loses its singleton axis).
    for (const auto& [gguf_name, hf_name] : std::vector<std::pair<std::string, std::string>>{
             {"blk.0.ssm_conv1d.weight", "backbone.layers.0.mixer.conv1d.weight"},
             {"token_embd.weight", "backbone.embeddings.weight"},
             {"blk.0.ssm_d", "backbone.layers.0.mixer.D"},
             {"output_norm.weight", "backbone.norm_f.weight"}}) {
        const SafetensorsTensor& src = *source->find(hf_name);
        const GgufTensorInfo& dst = tensor(*file, gguf_name);
        ASSERT_EQ(dst.nbytes, src.data.size()) << gguf_name;
        EXPECT_EQ(std::memcmp(dst.data, src.data.data(), dst.nbytes), 0) << gguf_name;
    }
}

// ggml's (and llama.cpp's gguf-py) Q8_0: per block of 32, d = amax / 127 stored as fp16, then
// q = round-half-away(x / d) as int8, 34 bytes per block.
TEST(Convert, Q8_0BlocksLaidOutAsGgml) {
    const test::TempDir tmp;
    const auto file = convert_fixture("mamba_sharded_bpe", "q8_0", tmp);
    const auto checkpoint = SafetensorsCheckpoint::open(kHfDir + "mamba_sharded_bpe");
    const std::vector<float> x = source_floats(*checkpoint->find("backbone.layers.0.mixer.in_proj.weight"));
    const GgufTensorInfo& q = tensor(*file, "blk.0.ssm_in.weight");
    ASSERT_EQ(q.type, GgmlType::Q8_0);
    ASSERT_EQ(q.nbytes, x.size() / 32 * 34);
    int64_t nonzero_quants = 0;
    for (size_t block = 0; block < x.size() / 32; ++block) {
        const uint8_t* bytes = q.data + block * 34;
        const float* values = x.data() + block * 32;
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(values[i]));
        const float d = amax / 127.0f;
        uint16_t stored_d = 0;
        std::memcpy(&stored_d, bytes, sizeof(stored_d));
        ASSERT_EQ(stored_d, fp32_to_fp16(d)) << "block " << block;
        const float inverse = d != 0 ? 1.0f / d : 0.0f;
        for (int i = 0; i < 32; ++i) {
            const auto stored = static_cast<int8_t>(bytes[2 + i]);
            ASSERT_EQ(stored, static_cast<int8_t>(std::round(values[i] * inverse))) << "block " << block << " " << i;
            nonzero_quants += stored != 0;
        }
    }
    EXPECT_GT(nonzero_quants, static_cast<int64_t>(x.size() / 2));
}

// --- error handling -------------------------------------------------------------------------------------

TEST(ConvertErrors, MissingConfig) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    fs::remove(dir + "/config.json");
    expect_failure(dir, {"config.json"});
}

TEST(ConvertErrors, MissingDirectoryOrWeights) {
    const test::TempDir tmp;
    expect_failure(tmp.file("nowhere"), {"nowhere", "config.json"});
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    fs::remove(dir + "/model.safetensors");
    expect_failure(dir, {"model.safetensors"});
}

TEST(ConvertErrors, UnsupportedArchitectureNamesSupportedOnes) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_config(dir, [](nlohmann::json& c) { c["architectures"] = {"JambaForCausalLM"}; });
    expect_failure(dir, {"JambaForCausalLM", "MambaForCausalLM, FalconMambaForCausalLM, Mamba2ForCausalLM"});
}

TEST(ConvertErrors, TruncatedSafetensors) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 100);
    expect_failure(dir, {"model.safetensors", "truncated"});
    fs::resize_file(dir + "/model.safetensors", 40);  // inside the header
    expect_failure(dir, {"model.safetensors", "header length"});
}

TEST(ConvertErrors, TruncatedShard) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_sharded_bpe", tmp);
    const std::string shard = dir + "/model-00003-of-00005.safetensors";
    fs::resize_file(shard, fs::file_size(shard) - 1);
    expect_failure(dir, {"model-00003-of-00005.safetensors", "truncated"});
}

TEST(ConvertErrors, ShapeMismatch) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_config(dir, [](nlohmann::json& c) { c["state_size"] = 8; });
    expect_failure(dir, {"backbone.layers.0.mixer.x_proj.weight", "[34, 64]", "expected [18, 64]"});
}

TEST(ConvertErrors, LayerCountMismatch) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_config(dir, [](nlohmann::json& c) { c["num_hidden_layers"] = 1; });
    expect_failure(dir, {"unexpected tensor 'backbone.layers.1."});
    edit_config(dir, [](nlohmann::json& c) { c["num_hidden_layers"] = 3; });
    expect_failure(dir, {"no tensor 'backbone.layers.2.norm.weight'"});
}

TEST(ConvertErrors, BiasFlagDisagreesWithWeights) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_config(dir, [](nlohmann::json& c) { c["use_bias"] = true; });
    expect_failure(dir, {"in_proj.bias", "use_bias"});
}

TEST(ConvertErrors, UnsupportedAndUnknownDtypes) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_weights(dir, [](test::SafetensorsBuilder& b) { b.header()["backbone.norm_f.weight"]["dtype"] = "I32"; });
    expect_failure(dir, {"backbone.norm_f.weight", "dtype I32", "F32, F16 and BF16"});
    edit_weights(dir, [](test::SafetensorsBuilder& b) { b.header()["backbone.norm_f.weight"]["dtype"] = "Q4"; });
    expect_failure(dir, {"unknown dtype 'Q4'"});
}

TEST(ConvertErrors, BadOuttypeAndMissingTokenizer) {
    const test::TempDir tmp;
    expect_failure(kHfDir + "mamba_tied_bpe", {"--outtype", "'q3_k_m'", "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k"},
                   "--outtype q3_k_m");
    expect_failure(kHfDir + "mamba_bf16_neox", {}, "--outtype bf16");  // no tokenizer beside the weights
    expect_failure(kHfDir + "mamba_tied_bpe", {}, "--vocab " + test::shell_quote(tmp.file("none")));
}

TEST(ConvertErrors, ExistingOutputLeftAloneOnFailure) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    fs::remove(dir + "/model.safetensors");
    const std::string out = tmp.file("keep.gguf");
    const std::vector<uint8_t> original = {'k', 'e', 'e', 'p'};
    test::write_file(out, original);
    EXPECT_EQ(convert(dir, out).exit_code, 1);
    EXPECT_EQ(test::read_file(out), original);
}

// An added_tokens_decoder id whose + 1 overflows int64 once passed the range check and wrote the vocabulary
// arrays out of bounds (heap corruption); it is one clear error naming the file and the id.
TEST(ConvertErrors, AddedTokenIdNearInt64MaxIsAnError) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_f16_spm", tmp);
    std::ofstream(dir + "/tokenizer_config.json")
        << R"({"added_tokens_decoder": {"9223372036854775807": {"content": "<x>", "special": true}}})";
    expect_failure(dir, {"tokenizer_config.json", "added_tokens_decoder entry '9223372036854775807'",
                         "lies past the model's 500 vocabulary rows"});
}

// intermediate_size is trusted whatever expand says, and a fractional expand without it gives
// expand * hidden_size when that is a whole number (1.5 * 32 = 48 would not match these weights).
TEST(Convert, FractionalExpandWithIntermediateSizeConverts) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_config(dir, [](nlohmann::json& c) { c["expand"] = 1.5; });
    const test::CommandResult r = convert(dir, tmp.file("out.gguf"), "--outtype f32");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(Model::load(tmp.file("out.gguf"))->hparams().d_inner, 64);

    edit_config(dir, [](nlohmann::json& c) { c.erase("intermediate_size"); });
    expect_failure(dir, {"in_proj.weight", "expected [96, 32]"});
    edit_config(dir, [](nlohmann::json& c) { c["expand"] = 2.0; });
    ASSERT_EQ(convert(dir, tmp.file("out2.gguf"), "--outtype f32").exit_code, 0);
    EXPECT_EQ(Model::load(tmp.file("out2.gguf"))->hparams().d_inner, 64);
}

TEST(Convert, ConfigWithInfinityAndNaNConverts) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    std::string text;
    {
        std::ifstream in(dir + "/config.json");
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    text.replace(text.find("\"time_step_floor\": 0.0001"), std::string("\"time_step_floor\": 0.0001").size(),
                 "\"time_step_floor\": Infinity, \"x_nan\": NaN, \"x_neg\": -Infinity");
    std::ofstream(dir + "/config.json") << text;
    const test::CommandResult r = convert(dir, tmp.file("out.gguf"), "--outtype f32");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(Model::load(tmp.file("out.gguf"))->hparams().d_state, 16);
}

TEST(Convert, AcceptsMambaSsmEmbeddingName) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_tied_bpe", tmp);
    edit_weights(dir, [](test::SafetensorsBuilder& b) {
        b.header()["backbone.embedding.weight"] = b.header()["backbone.embeddings.weight"];
        b.header().erase("backbone.embeddings.weight");
    });
    ASSERT_EQ(convert(dir, tmp.file("out.gguf"), "--outtype f32").exit_code, 0);
    EXPECT_EQ(Model::load(tmp.file("out.gguf"))->hparams().n_vocab, 512);
}

TEST(Convert, UntiedHeadEqualToEmbeddingIsOmitted) {
    const test::TempDir tmp;
    const std::string dir = copy_fixture("mamba_untied_spm", tmp);
    edit_weights(dir, [](test::SafetensorsBuilder& b) {
        const nlohmann::json& embd = b.header()["backbone.embeddings.weight"]["data_offsets"];
        const nlohmann::json& head = b.header()["lm_head.weight"]["data_offsets"];
        std::vector<uint8_t>& data = b.data();
        std::copy(data.begin() + embd[0].get<int64_t>(), data.begin() + embd[1].get<int64_t>(),
                  data.begin() + head[0].get<int64_t>());
    });
    ASSERT_EQ(convert(dir, tmp.file("out.gguf"), "--outtype f32").exit_code, 0);
    const auto model = Model::load(tmp.file("out.gguf"));
    EXPECT_TRUE(model->weights().tied_output);
    EXPECT_EQ(model->gguf().find_tensor("output.weight"), nullptr);
}

}  // namespace
}  // namespace dendro
