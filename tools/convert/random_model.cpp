// Random-weight Mamba-1 and Mamba-2 GGUF files (see random_model.h). Scales follow HF MambaMixer's and
// Mamba2Mixer's initialisation so that activations stay finite at any depth: A = -[1..d_state] (Mamba-1) or
// one A per head uniform in -[1, 16] (Mamba-2), dt bias = softplus^-1 of a log-uniform dt in [1e-3, 1e-1],
// Linear weights uniform in +-1/sqrt(fan_in), out_proj further scaled by 1/sqrt(n_layer).
#include "random_model.h"

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "cpu/topology.h"
#include "common/error.h"
#include "format/gguf.h"
#include "parallel_rows.h"
#include "tensor_types.h"
#include "synthetic_vocab.h"
#include "cpu/thread_pool.h"

namespace dendro {
namespace {

constexpr float kEmbeddingScale = 0.17f;   // uniform +-0.17: std 0.1, HF Mamba's initializer_range
constexpr float kNormJitter = 0.1f;        // norm weights in 1 +- 0.1
constexpr float kSkipJitter = 0.1f;        // D in 1 +- 0.1
constexpr float kBiasScale = 0.05f;        // optional biases
constexpr double kDtMin = 1e-3, kDtMax = 1e-1;
constexpr float kMamba2AMin = 1.0f, kMamba2AMax = 16.0f;  // HF Mamba2Mixer: A_log = log(uniform(1, 16))
// llama.cpp's converter writes this context length for Mamba, which has no limit of its own.
constexpr uint32_t kMambaContextLength = 1u << 20;

// splitmix64: a counter-based generator, so any element can be computed independently of the others.
uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t name_hash(const std::string& name) {  // FNV-1a: stable across platforms, unlike std::hash
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

// Uniform in [0, 1) from the top 24 bits of the element's hash.
constexpr int kUniformBits = 24;
float uniform01(uint64_t stream, uint64_t index) {
    return static_cast<float>(mix(stream ^ mix(index)) >> (64 - kUniformBits)) * std::ldexp(1.0f, -kUniformBits);
}
float uniform_pm1(uint64_t stream, uint64_t index) { return 2.0f * uniform01(stream, index) - 1.0f; }

// Fills the values of one row, given the tensor's random stream (one call per row keeps the per-element
// cost to the hash itself).
using RowFn = std::function<void(uint64_t stream, int64_t row, float* values, int64_t row_length)>;

class RandomModelWriter {
public:
    explicit RandomModelWriter(uint64_t seed)
        : seed_(seed), pool_(std::make_shared<ThreadPool>(default_thread_count())) {}

    void add(GgufWriter& writer, const std::string& name, GgmlType type, std::vector<int64_t> ne, RowFn fn) {
        const uint64_t stream = mix(seed_ ^ name_hash(name));
        const int64_t row_length = ne[0];
        int64_t n_rows = 1;
        for (size_t i = 1; i < ne.size(); ++i) n_rows *= ne[i];
        const size_t row_bytes = ggml_row_size(type, row_length);
        // The tensor is filled when the writer streams it out, after add() has returned: the pool is shared.
        writer.add_tensor(name, type, std::move(ne), [=, pool = pool_](std::vector<uint8_t>& out) {
            out.resize(row_bytes * static_cast<size_t>(n_rows));
            fill_rows_in_parallel(*pool, n_rows, row_length, [&](int64_t row_begin, int64_t row_end) {
                std::vector<float> values(static_cast<size_t>(row_length));
                for (int64_t r = row_begin; r < row_end; ++r) {
                    fn(stream, r, values.data(), row_length);
                    quantize_row(type, values.data(), out.data() + r * row_bytes, row_length);
                }
            });
        });
    }

private:
    uint64_t seed_;
    std::shared_ptr<ThreadPool> pool_;
};

RowFn uniform(float amplitude) {
    return [=](uint64_t stream, int64_t r, float* values, int64_t n) {
        for (int64_t c = 0; c < n; ++c) values[c] = amplitude * uniform_pm1(stream, static_cast<uint64_t>(r * n + c));
    };
}

RowFn around_one(float jitter) {
    return [=](uint64_t stream, int64_t, float* values, int64_t n) {
        for (int64_t c = 0; c < n; ++c) values[c] = 1.0f + jitter * uniform_pm1(stream, c);
    };
}

// Each weight matrix in the type `dendro convert --outtype` would store it in (tensor_types.h).
struct LayerTensorTypes {
    OutType out_type;
    bool tied;
    GgmlType matrix(const std::string& name, const std::vector<int64_t>& ne) const {
        return tensor_storage_type(name, ne, out_type, tied);
    }
};

void add_matrix(RandomModelWriter& rw, GgufWriter& writer, const LayerTensorTypes& types, const std::string& name,
                std::vector<int64_t> ne, RowFn fn) {
    const GgmlType type = types.matrix(name, ne);
    rw.add(writer, name, type, std::move(ne), std::move(fn));
}

float fan_in(int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); }

RowFn dt_bias() {
    return [](uint64_t stream, int64_t, float* values, int64_t n) {
        for (int64_t c = 0; c < n; ++c) {
            const double dt =
                std::exp(uniform01(stream, c) * (std::log(kDtMax) - std::log(kDtMin)) + std::log(kDtMin));
            values[c] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
        }
    };
}

// The out type whose matrices are all of `matrix_type`.
OutType out_type_of(GgmlType matrix_type) {
    switch (matrix_type) {
        case GgmlType::F32: return OutType::F32;
        case GgmlType::F16: return OutType::F16;
        case GgmlType::BF16: return OutType::BF16;
        case GgmlType::Q8_0: return OutType::Q8_0;
        default: fail("random model: matrix type ", ggml_type_name(matrix_type), " is not F32, F16, BF16 or Q8_0");
    }
}

void check_options(const ModelHparams& hp, const RandomModelOptions& options) {
    for (auto [value, what] : {std::pair{hp.n_vocab, "n_vocab"}, {hp.d_model, "d_model"}, {hp.n_layer, "n_layer"},
                               {hp.d_conv, "d_conv"}, {hp.d_inner, "d_inner"}, {hp.d_state, "d_state"}}) {
        if (value <= 0) fail("random model: ", what, " must be positive, got ", value);
    }
    if (hp.arch == Architecture::Mamba1 && hp.dt_rank <= 0) fail("random model: dt_rank must be positive, got ", hp.dt_rank);
    if (hp.arch == Architecture::Mamba2 &&
        (hp.n_head <= 0 || hp.n_group <= 0 || hp.d_inner % hp.n_head != 0 || hp.n_head % hp.n_group != 0)) {
        fail("random model: Mamba-2 needs n_head dividing d_inner and n_group dividing n_head (d_inner ", hp.d_inner,
             ", n_head ", hp.n_head, ", n_group ", hp.n_group, ")");
    }
    if (options.vector_type != GgmlType::F32 && options.vector_type != GgmlType::F16 &&
        options.vector_type != GgmlType::BF16) {
        fail("random model: vector type ", ggml_type_name(options.vector_type), " is not F32, F16 or BF16");
    }
    // (The vocabulary writers check n_vocab themselves.)
    if (options.byte_tokenizer && options.bpe_vocabulary) fail("random model: give at most one vocabulary");
}

// The tensors of one Mamba-1 layer, in llama.cpp's order.
void add_mamba1_layer(RandomModelWriter& rw, GgufWriter& writer, const ModelHparams& hp, const std::string& p,
                      const LayerTensorTypes& types, const RandomModelOptions& options) {
    const GgmlType vt = options.vector_type;
    const int64_t n_xdbc = hp.dt_rank + 2 * hp.d_state;
    const RowFn a = [](uint64_t, int64_t, float* values, int64_t n) {
        for (int64_t c = 0; c < n; ++c) values[c] = -static_cast<float>(c + 1);
    };
    add_matrix(rw, writer, types, p + "ssm_in.weight", {hp.d_model, 2 * hp.d_inner},
           uniform(fan_in(hp.d_model)));
    if (options.proj_bias) rw.add(writer, p + "ssm_in.bias", vt, {2 * hp.d_inner}, uniform(kBiasScale));
    std::vector<int64_t> conv_shape = options.conv_3d ? std::vector<int64_t>{hp.d_conv, 1, hp.d_inner}
                                                      : std::vector<int64_t>{hp.d_conv, hp.d_inner};
    rw.add(writer, p + "ssm_conv1d.weight", vt, std::move(conv_shape), uniform(fan_in(hp.d_conv)));
    if (options.conv_bias) rw.add(writer, p + "ssm_conv1d.bias", vt, {hp.d_inner}, uniform(kBiasScale));
    add_matrix(rw, writer, types, p + "ssm_x.weight", {hp.d_inner, n_xdbc}, uniform(fan_in(hp.d_inner)));
    add_matrix(rw, writer, types, p + "ssm_dt.weight", {hp.dt_rank, hp.d_inner},
           uniform(fan_in(hp.dt_rank)));
    rw.add(writer, p + "ssm_dt.bias", vt, {hp.d_inner}, dt_bias());
    rw.add(writer, p + "ssm_a", vt, {hp.d_state, hp.d_inner}, a);
    rw.add(writer, p + "ssm_d", vt, {hp.d_inner}, around_one(kSkipJitter));
    add_matrix(rw, writer, types, p + "ssm_out.weight", {hp.d_inner, hp.d_model},
           uniform(fan_in(hp.d_inner) / std::sqrt(static_cast<float>(hp.n_layer))));
    if (options.proj_bias) rw.add(writer, p + "ssm_out.bias", vt, {hp.d_model}, uniform(kBiasScale));
}

// The tensors of one Mamba-2 layer, with the shapes llama.cpp's converter writes.
void add_mamba2_layer(RandomModelWriter& rw, GgufWriter& writer, const ModelHparams& hp, const std::string& p,
                      const LayerTensorTypes& types, const RandomModelOptions& options) {
    const GgmlType vt = options.vector_type;
    const int64_t n_conv = hp.conv_channels(), n_in = hp.in_proj_rows();
    const RowFn a = [](uint64_t stream, int64_t, float* values, int64_t n) {
        for (int64_t h = 0; h < n; ++h) values[h] = -(kMamba2AMin + (kMamba2AMax - kMamba2AMin) * uniform01(stream, h));
    };
    add_matrix(rw, writer, types, p + "ssm_in.weight", {hp.d_model, n_in}, uniform(fan_in(hp.d_model)));
    if (options.proj_bias) rw.add(writer, p + "ssm_in.bias", vt, {n_in}, uniform(kBiasScale));
    std::vector<int64_t> conv_shape = options.conv_3d ? std::vector<int64_t>{hp.d_conv, 1, n_conv}
                                                      : std::vector<int64_t>{hp.d_conv, n_conv};
    rw.add(writer, p + "ssm_conv1d.weight", vt, std::move(conv_shape), uniform(fan_in(hp.d_conv)));
    if (options.conv_bias) rw.add(writer, p + "ssm_conv1d.bias", vt, {n_conv}, uniform(kBiasScale));
    rw.add(writer, p + "ssm_dt.bias", vt, {hp.n_head}, dt_bias());
    rw.add(writer, p + "ssm_a", vt, {1, hp.n_head}, a);
    rw.add(writer, p + "ssm_d", vt, {1, hp.n_head}, around_one(kSkipJitter));
    rw.add(writer, p + "ssm_norm.weight", vt, {hp.d_inner / hp.n_group, hp.n_group}, around_one(kNormJitter));
    add_matrix(rw, writer, types, p + "ssm_out.weight", {hp.d_inner, hp.d_model},
           uniform(fan_in(hp.d_inner) / std::sqrt(static_cast<float>(hp.n_layer))));
    if (options.proj_bias) rw.add(writer, p + "ssm_out.bias", vt, {hp.d_model}, uniform(kBiasScale));
}

// The hyper-parameter keys of the architecture, as llama.cpp's converter writes them.
void set_hparam_keys(GgufWriter& writer, const ModelHparams& hp) {
    const std::string arch = architecture_name(hp.arch);
    const auto key = [&](const char* suffix) { return concat(arch, ".", suffix); };
    const auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
    writer.set(key("context_length"), GgufValue::u32(kMambaContextLength));
    writer.set(key("embedding_length"), u32(hp.d_model));
    writer.set(key("feed_forward_length"), GgufValue::u32(0));
    writer.set(key("attention.head_count"), GgufValue::u32(0));
    writer.set(key("block_count"), u32(hp.n_layer));
    writer.set(key("ssm.conv_kernel"), u32(hp.d_conv));
    writer.set(key("ssm.inner_size"), u32(hp.d_inner));
    writer.set(key("ssm.state_size"), u32(hp.d_state));
    writer.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(hp.norm_eps));
    if (hp.arch == Architecture::Mamba2) {
        writer.set(key("ssm.time_step_rank"), u32(hp.n_head));
        writer.set(key("ssm.group_count"), u32(hp.n_group));
        if (hp.time_step_min > 0.0f) writer.set(kTimeStepMinKey, GgufValue::f32(hp.time_step_min));
        if (std::isfinite(hp.time_step_max)) writer.set(kTimeStepMaxKey, GgufValue::f32(hp.time_step_max));
        return;
    }
    writer.set(key("ssm.time_step_rank"), u32(hp.dt_rank));
    writer.set(key("ssm.dt_b_c_rms"), GgufValue::boolean(hp.dt_b_c_rms));
    if (hp.dt_b_c_rms) writer.set(kMixerRmsEpsKey, GgufValue::f32(hp.mixer_rms_eps));
}

}  // namespace

void write_random_mamba_gguf(const std::string& path, const ModelHparams& hp, GgmlType matrix_type, uint64_t seed,
                             bool tied, const RandomModelOptions& options) {
    write_random_mamba_gguf(path, hp, out_type_of(matrix_type), seed, tied, options);
}

void write_random_mamba_gguf(const std::string& path, const ModelHparams& hp, OutType out_type, uint64_t seed,
                             bool tied, const RandomModelOptions& options) {
    check_options(hp, options);
    GgufWriter writer;
    writer.set("general.architecture", GgufValue::string(architecture_name(hp.arch)));
    writer.set("general.name", GgufValue::string(hp.arch == Architecture::Mamba2 ? "random-mamba2" : "random-mamba"));
    set_hparam_keys(writer, hp);
    writer.set("general.file_type", GgufValue::u32(out_type_file_type(out_type)));
    if (options.byte_tokenizer) add_byte_vocab(writer, hp.n_vocab);
    if (options.bpe_vocabulary) add_synthetic_bpe_vocab(writer, hp.n_vocab);

    const GgmlType vt = options.vector_type;
    const LayerTensorTypes types{out_type, tied};
    RandomModelWriter rw(seed);
    add_matrix(rw, writer, types, "token_embd.weight", {hp.d_model, hp.n_vocab}, uniform(kEmbeddingScale));
    rw.add(writer, "output_norm.weight", vt, {hp.d_model}, around_one(kNormJitter));
    if (!tied) {
        add_matrix(rw, writer, types, "output.weight", {hp.d_model, hp.n_vocab}, uniform(kEmbeddingScale));
    }
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const std::string p = concat("blk.", il, ".");
        rw.add(writer, p + "attn_norm.weight", vt, {hp.d_model}, around_one(kNormJitter));
        if (hp.arch == Architecture::Mamba2) {
            add_mamba2_layer(rw, writer, hp, p, types, options);
        } else {
            add_mamba1_layer(rw, writer, hp, p, types, options);
        }
    }
    writer.write(path);
}

}  // namespace dendro
