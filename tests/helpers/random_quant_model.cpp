// Random quant blocks and random models stored in the quant types (see random_quant_model.h).
#include "random_quant_model.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "common/error.h"
#include "format/gguf.h"
#include "format/ggml_quant_blocks.h"

namespace dendro::test {
namespace {

// Where a block's fp16 scales are: d, and for the types with a min or offset, that second field and its
// size relative to d (negative for an offset m that is added) so that random quants centre near zero.
struct ScaleFields {
    size_t d;
    std::optional<size_t> second;
    float second_per_d = 0.0f;
};

ScaleFields scale_fields(GgmlType type) {
    // The mean of a uniform q in [0, 2^bits) (for the k-quants, random 4- or 6-bit scales and mins have the
    // same mean, so the same ratio centres them).
    constexpr float kMean2 = 1.5f, kMean4 = 7.5f, kMean5 = 15.5f;
    switch (type) {
        case GgmlType::Q4_0: return {offsetof(BlockQ4_0, d), std::nullopt, 0.0f};
        case GgmlType::Q4_1: return {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m), -kMean4};
        case GgmlType::Q5_0: return {offsetof(BlockQ5_0, d), std::nullopt, 0.0f};
        case GgmlType::Q5_1: return {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m), -kMean5};
        case GgmlType::IQ4_NL: return {offsetof(BlockIQ4_NL, d), std::nullopt, 0.0f};
        case GgmlType::Q2_K: return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin), kMean2};
        case GgmlType::Q3_K: return {offsetof(BlockQ3_K, d), std::nullopt, 0.0f};
        case GgmlType::Q4_K: return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin), kMean4};
        case GgmlType::Q5_K: return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin), kMean5};
        case GgmlType::Q6_K: return {offsetof(BlockQ6_K, d), std::nullopt, 0.0f};
        default: fail("random quant blocks: ", ggml_type_name(type), " is not a read-only quant type");
    }
}

void set_f16(uint8_t* block, size_t offset, float value) {
    const uint16_t bits = fp32_to_fp16(value);
    std::memcpy(block + offset, &bits, sizeof(bits));
}

bool is_weight_matrix(const std::string& name) {
    for (const char* suffix : {"token_embd.weight", "output.weight", "ssm_in.weight", "ssm_x.weight",
                               "ssm_dt.weight", "ssm_out.weight"}) {
        const std::string s(suffix);
        if (name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
            return name.size() == s.size() || name[name.size() - s.size() - 1] == '.';
        }
    }
    return false;
}

bool is_read_only_quant(GgmlType type) {
    const auto& types = read_only_quant_types();
    return std::find(types.begin(), types.end(), type) != types.end();
}

}  // namespace

const std::vector<GgmlType>& read_only_quant_types() {
    static const std::vector<GgmlType> types{GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                             GgmlType::IQ4_NL, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                                             GgmlType::Q5_K, GgmlType::Q6_K};
    return types;
}

std::vector<uint8_t> random_quant_blocks(GgmlType type, int64_t n_blocks, uint64_t seed, float max_abs) {
    const GgmlTypeTraits traits = *ggml_type_traits(static_cast<uint32_t>(type));
    const ScaleFields fields = scale_fields(type);
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> unit(0.5f, 1.0f);
    std::vector<uint8_t> bytes(static_cast<size_t>(n_blocks) * traits.type_size);
    std::vector<float> values(static_cast<size_t>(traits.block_size));
    for (int64_t b = 0; b < n_blocks; ++b) {
        uint8_t* block = bytes.data() + b * traits.type_size;
        for (size_t i = 0; i < traits.type_size; ++i) block[i] = static_cast<uint8_t>(byte(rng));
        // Unit scales first, then the block's largest value scaled to about max_abs.
        const float d = unit(rng), second = fields.second_per_d * d * unit(rng);
        set_f16(block, fields.d, d);
        if (fields.second) set_f16(block, *fields.second, second);
        dequantize_row(type, block, values.data(), traits.block_size);
        float largest = 0.0f;
        for (float v : values) largest = std::max(largest, std::fabs(v));
        if (largest == 0.0f) continue;
        const float factor = max_abs / largest;
        set_f16(block, fields.d, d * factor);
        if (fields.second) set_f16(block, *fields.second, second * factor);
    }
    return bytes;
}

ModelHparams tiny_hparams_k_quants() {
    ModelHparams hp;
    hp.n_vocab = 90;
    hp.d_model = 256;
    hp.n_layer = 2;
    hp.d_conv = 4;
    hp.d_inner = 512;
    hp.d_state = 8;
    hp.dt_rank = 16;
    hp.norm_eps = 1e-5f;
    return hp;
}

MatrixTypeChoice matrices_of_type(GgmlType type) {
    return [type](const std::string&, int64_t row_length) {
        const int64_t block = ggml_type_traits(static_cast<uint32_t>(type))->block_size;
        return row_length % block == 0 ? type : GgmlType::F16;
    };
}

void write_random_quant_mamba_gguf(const std::string& path, const ModelHparams& hp, const MatrixTypeChoice& choice,
                                   uint64_t seed, bool tied, const RandomModelOptions& options) {
    const std::string f32_path = path + ".f32";
    write_random_mamba_gguf(f32_path, hp, GgmlType::F32, seed, tied, options);
    {
        const auto source = GgufFile::open(f32_path);
        GgufWriter writer(source->alignment());
        for (const GgufKeyValue& kv : source->kvs()) writer.set(kv.key, kv.value);
        uint64_t tensor_seed = seed;
        for (const GgufTensorInfo& info : source->tensors()) {
            ++tensor_seed;
            const int64_t row_length = info.ne[0];
            const GgmlType type = is_weight_matrix(info.name) ? choice(info.name, row_length) : GgmlType::F32;
            const auto* values = reinterpret_cast<const float*>(info.data);
            std::vector<uint8_t> bytes;
            if (is_read_only_quant(type)) {
                float max_abs = 0.0f;
                for (int64_t i = 0; i < info.n_elements(); ++i) max_abs = std::max(max_abs, std::fabs(values[i]));
                const int64_t blocks = info.n_elements() / ggml_type_traits(static_cast<uint32_t>(type))->block_size;
                bytes = random_quant_blocks(type, blocks, tensor_seed, max_abs);
            } else {
                bytes.resize(ggml_row_size(type, row_length) * static_cast<size_t>(info.n_rows()));
                for (int64_t r = 0; r < info.n_rows(); ++r) {
                    quantize_row(type, values + r * row_length, bytes.data() + r * ggml_row_size(type, row_length),
                                 row_length);
                }
            }
            writer.add_tensor(info.name, type, info.ne, std::move(bytes));
        }
        writer.write(path);
    }
    std::remove(f32_path.c_str());
}

}  // namespace dendro::test
