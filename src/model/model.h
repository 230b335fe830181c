// A Mamba-1 model as loaded from a GGUF file of llama.cpp's architecture "mamba": hyper-parameters, and
// zero-copy views of every weight tensor in the mapping. Shapes are checked against the hyper-parameters.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/ggml_types.h"
#include "format/gguf.h"

namespace dendro {

// Optional FLOAT32 key holding ModelHparams::mixer_rms_eps (written by Dendro's converter for Falcon-Mamba).
inline constexpr const char* kMixerRmsEpsKey = "dendro.ssm.mixer_rms_eps";

struct ModelHparams {
    int64_t n_vocab = 0;   // rows of token_embd
    int64_t d_model = 0;   // mamba.embedding_length
    int64_t n_layer = 0;   // mamba.block_count
    int64_t d_conv = 0;    // mamba.ssm.conv_kernel
    int64_t d_inner = 0;   // mamba.ssm.inner_size
    int64_t d_state = 0;   // mamba.ssm.state_size
    int64_t dt_rank = 0;   // mamba.ssm.time_step_rank
    float norm_eps = 1e-5f;     // mamba.attention.layer_norm_rms_epsilon
    bool dt_b_c_rms = false;    // mamba.ssm.dt_b_c_rms (Falcon-Mamba)
    // Epsilon of Falcon-Mamba's weightless RMSNorms on dt, B and C: HF's config.mixer_rms_eps, which differs
    // from norm_eps (llama.cpp reuses norm_eps). GGUF has no key for it; Dendro reads the optional
    // dendro.ssm.mixer_rms_eps and otherwise uses HF's default.
    float mixer_rms_eps = 1e-6f;
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
struct Mamba1LayerWeights {
    TensorView attn_norm;   // {d_model}
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
};

struct ModelWeights {
    TensorView token_embd;   // {d_model, n_vocab}
    TensorView output_norm;  // {d_model}
    TensorView output;       // {d_model, n_vocab}; equals token_embd when tied
    bool tied_output = false;
    std::vector<Mamba1LayerWeights> layers;
};

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
