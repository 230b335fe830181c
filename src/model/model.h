// A model as loaded from a GGUF file of llama.cpp's architecture "mamba" (Mamba-1, Falcon-Mamba) or "mamba2"
// (Mamba-2, Codestral): hyper-parameters, and a list of typed layers holding zero-copy views of every weight
// tensor in the mapping. Shapes are checked against the hyper-parameters. Each architecture's loading rules
// live in one file (model_mamba1.cpp, model_mamba2.cpp); a layer's mixer is a variant, so that hybrid
// architectures (attention and MLP layers between Mamba-2 layers) add alternatives rather than a new model.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "format/ggml_types.h"
#include "format/gguf.h"

namespace dendro {

// Optional FLOAT32 key holding ModelHparams::mixer_rms_eps (written by Dendro's converter for Falcon-Mamba).
inline constexpr const char* kMixerRmsEpsKey = "dendro.ssm.mixer_rms_eps";
// Optional FLOAT32 keys holding ModelHparams::time_step_min / time_step_max (HF Mamba2Config.time_step_limit,
// which llama.cpp's GGUF does not record). Absent: no clamp.
inline constexpr const char* kTimeStepMinKey = "dendro.ssm.time_step_min";
inline constexpr const char* kTimeStepMaxKey = "dendro.ssm.time_step_max";

enum class Architecture { Mamba1, Mamba2 };

// general.architecture as llama.cpp writes it: "mamba" or "mamba2".
const char* architecture_name(Architecture arch);

// llama.cpp's hyper-parameters for both mixers (as its llama_hparams keeps them): the fields a mixer does not
// use are 0. Every layer of a model has the same mixer shape.
struct ModelHparams {
    Architecture arch = Architecture::Mamba1;
    int64_t n_vocab = 0;   // rows of token_embd
    int64_t d_model = 0;   // {arch}.embedding_length
    int64_t n_layer = 0;   // {arch}.block_count
    int64_t d_conv = 0;    // {arch}.ssm.conv_kernel
    int64_t d_inner = 0;   // {arch}.ssm.inner_size
    int64_t d_state = 0;   // {arch}.ssm.state_size
    float norm_eps = 1e-5f;  // {arch}.attention.layer_norm_rms_epsilon (Mamba-2: its gated norm's too)

    // Mamba-1
    int64_t dt_rank = 0;        // mamba.ssm.time_step_rank
    bool dt_b_c_rms = false;    // mamba.ssm.dt_b_c_rms (Falcon-Mamba)
    // Epsilon of Falcon-Mamba's weightless RMSNorms on dt, B and C: HF's config.mixer_rms_eps, which differs
    // from norm_eps (llama.cpp reuses norm_eps). GGUF has no key for it; Dendro reads the optional
    // dendro.ssm.mixer_rms_eps and otherwise uses HF's default.
    float mixer_rms_eps = 1e-6f;

    // Mamba-2
    int64_t n_head = 0;    // mamba2.ssm.time_step_rank: one dt (and one A, D) per head
    int64_t head_dim = 0;  // d_inner / n_head
    int64_t n_group = 0;   // mamba2.ssm.group_count: heads share B and C within a group
    float time_step_min = 0.0f;  // dt is clamped to [time_step_min, time_step_max] after softplus
    float time_step_max = std::numeric_limits<float>::infinity();

    // Channels of the causal conv (its window's width): x for Mamba-1; x, B and C for Mamba-2.
    int64_t conv_channels() const { return arch == Architecture::Mamba2 ? d_inner + 2 * n_group * d_state : d_inner; }
    // Rows of ssm_in: x and z for Mamba-1; z, xBC and dt for Mamba-2.
    int64_t in_proj_rows() const { return arch == Architecture::Mamba2 ? d_inner + conv_channels() + n_head : 2 * d_inner; }
};

// A weight tensor inside the mapped file. ne in ggml order (ne[0] = row length).
struct TensorView {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::array<int64_t, 4> ne{1, 1, 1, 1};
    const uint8_t* data = nullptr;
    uint64_t nbytes = 0;

    bool present() const { return data != nullptr; }
    int64_t row_length() const { return ne[0]; }
    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
    size_t row_bytes() const { return ggml_row_size(type, ne[0]); }
    const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }

    // The tensor as the GGUF file lays it out, without any check of its type or shape.
    static TensorView of(const GgufTensorInfo& info) {
        TensorView v;
        v.name = info.name;
        v.type = info.type;
        for (size_t i = 0; i < info.ne.size(); ++i) v.ne[i] = info.ne[i];
        v.data = info.data;
        v.nbytes = info.nbytes;
        return v;
    }
};

// Matrices are stored as rows of the input dimension: y = W x with W of n_rows outputs x row_length inputs.
struct Mamba1Mixer {
    TensorView ssm_in;      // {d_model, 2*d_inner}: x then z
    TensorView ssm_in_b;    // optional {2*d_inner} (HF use_bias)
    TensorView conv1d_w;    // {d_conv, d_inner} (a 3-D {d_conv, 1, d_inner} file is viewed as 2-D)
    TensorView conv1d_b;    // optional {d_inner} (HF use_conv_bias)
    TensorView ssm_x;       // {d_inner, dt_rank + 2*d_state}: dt_low, B, C
    TensorView ssm_dt_w;    // {dt_rank, d_inner}
    TensorView ssm_dt_b;    // {d_inner}
    TensorView ssm_a;       // {d_state, d_inner}, holds -exp(A_log)
    TensorView ssm_d;       // {d_inner}
    TensorView ssm_out;     // {d_inner, d_model}
    TensorView ssm_out_b;   // optional {d_model} (HF use_bias)

    std::array<const TensorView*, 11> tensors() const {
        return {&ssm_in, &ssm_in_b, &conv1d_w, &conv1d_b, &ssm_x, &ssm_dt_w, &ssm_dt_b, &ssm_a, &ssm_d, &ssm_out, &ssm_out_b};
    }
    std::array<const TensorView*, 4> matrices() const { return {&ssm_in, &ssm_x, &ssm_dt_w, &ssm_out}; }
};

// The SSD mixer. conv_channels = d_inner + 2*n_group*d_state.
struct Mamba2Mixer {
    TensorView ssm_in;      // {d_model, in_proj_rows}: z (d_inner), xBC (conv_channels), dt (n_head)
    TensorView ssm_in_b;    // optional {in_proj_rows} (HF use_bias)
    TensorView conv1d_w;    // {d_conv, conv_channels} (or {d_conv, 1, conv_channels})
    TensorView conv1d_b;    // optional {conv_channels} (HF use_conv_bias)
    TensorView ssm_dt_b;    // {n_head}
    TensorView ssm_a;       // {1, n_head} (or {n_head}), holds -exp(A_log)
    TensorView ssm_d;       // {1, n_head} (or {n_head})
    TensorView ssm_norm;    // {d_inner / n_group, n_group} (or {d_inner}): the gated RMSNorm's weight
    TensorView ssm_out;     // {d_inner, d_model}
    TensorView ssm_out_b;   // optional {d_model} (HF use_bias)

    std::array<const TensorView*, 10> tensors() const {
        return {&ssm_in, &ssm_in_b, &conv1d_w, &conv1d_b, &ssm_dt_b, &ssm_a, &ssm_d, &ssm_norm, &ssm_out, &ssm_out_b};
    }
    std::array<const TensorView*, 2> matrices() const { return {&ssm_in, &ssm_out}; }
};

using Mixer = std::variant<Mamba1Mixer, Mamba2Mixer>;

// One residual block: x += mixer(rms_norm(x) * attn_norm).
struct LayerWeights {
    TensorView attn_norm;  // {d_model}
    Mixer mixer;

    // The mixer of a layer known to be of that kind (std::bad_variant_access otherwise).
    const Mamba1Mixer& mamba1() const { return std::get<Mamba1Mixer>(mixer); }
    const Mamba2Mixer& mamba2() const { return std::get<Mamba2Mixer>(mixer); }
};

struct ModelWeights {
    TensorView token_embd;   // {d_model, n_vocab}
    TensorView output_norm;  // {d_model}
    TensorView output;       // {d_model, n_vocab}; equals token_embd when tied
    bool tied_output = false;
    std::vector<LayerWeights> layers;
};

// Every weight tensor of a layer (absent optional ones included, as empty views), and its matrices.
std::vector<const TensorView*> layer_tensors(const LayerWeights& layer);
std::vector<const TensorView*> layer_matrices(const LayerWeights& layer);

class Model {
public:
    // Loads and validates; throws dendro::Error naming the file and the key or tensor at fault.
    static std::unique_ptr<Model> load(const std::string& path);
    // Views a model inside an already opened file (takes ownership).
    static std::unique_ptr<Model> from_gguf(std::unique_ptr<GgufFile> file);

    const ModelHparams& hparams() const { return hparams_; }
    const ModelWeights& weights() const { return weights_; }
    const GgufFile& gguf() const { return *file_; }
    const std::string& name() const { return name_; }  // general.name, or the file stem
    uint64_t weight_bytes() const;  // bytes of all weight tensors (what a decode step streams)

private:
    Model() = default;
    std::unique_ptr<GgufFile> file_;
    ModelHparams hparams_;
    ModelWeights weights_;
    std::string name_;
};

}  // namespace dendro
