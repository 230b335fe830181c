// config.json of a HF Mamba checkpoint: MambaForCausalLM or FalconMambaForCausalLM (Mamba-1), or
// Mamba2ForCausalLM (Mamba-2, Codestral Mamba). Key names and defaults follow transformers' MambaConfig /
// FalconMambaConfig / Mamba2Config; the aliases llama.cpp's converter accepts (d_model, n_layer, d_inner,
// d_state, d_conv, dt_rank, rms_norm_eps) are read too.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace dendro {

inline constexpr const char* kHfMambaArchitecture = "MambaForCausalLM";
inline constexpr const char* kHfFalconMambaArchitecture = "FalconMambaForCausalLM";
inline constexpr const char* kHfMamba2Architecture = "Mamba2ForCausalLM";

struct HfMambaConfig {
    std::string architecture;      // kHfMambaArchitecture or kHfFalconMambaArchitecture
    bool dt_b_c_rms = false;       // Falcon-Mamba: RMS norms on dt, B and C
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t n_layer = 0;
    int64_t intermediate_size = 0;  // trusted when present, else expand * hidden_size
    int64_t state_size = 0;
    int64_t conv_kernel = 0;
    int64_t time_step_rank = 0;     // "auto" resolved to ceil(hidden_size / 16)
    double layer_norm_epsilon = 0;
    double mixer_rms_eps = 0;       // Falcon-Mamba's epsilon of the dt/B/C norms
    bool tie_word_embeddings = true;
    bool use_bias = false;          // in_proj / out_proj biases
    bool use_conv_bias = true;
};

// Mamba2ForCausalLM's hyper-parameters, as transformers' Mamba2 model uses them: d_inner is expand *
// hidden_size (transformers ignores intermediate_size), split into num_heads heads of head_dim channels;
// B and C are shared by the heads of each of n_groups groups; dt is clamped to time_step_limit. chunk_size
// only orders the prefill's sums (no effect on the result); residual_in_fp32 has none in fp32 arithmetic.
struct HfMamba2Config {
    int64_t vocab_size = 0;         // rows of the embedding (and of lm_head)
    int64_t hidden_size = 0;
    int64_t n_layer = 0;
    int64_t intermediate_size = 0;  // d_inner = expand * hidden_size = num_heads * head_dim
    int64_t num_heads = 0;
    int64_t head_dim = 0;
    int64_t state_size = 0;
    int64_t n_groups = 0;
    int64_t conv_kernel = 0;
    int64_t chunk_size = 0;
    double time_step_min = 0.0;     // time_step_limit
    double time_step_max = 0.0;     // +infinity when unlimited
    double layer_norm_epsilon = 0;  // the block norms, the final norm and the gated norm alike
    bool tie_word_embeddings = false;
    bool use_bias = false;          // in_proj / out_proj biases
    bool use_conv_bias = true;
    bool residual_in_fp32 = true;

    int64_t conv_dim() const { return intermediate_size + 2 * n_groups * state_size; }  // x, B and C
    int64_t in_proj_rows() const { return intermediate_size + conv_dim() + num_heads; }  // z, xBC and dt
    bool time_step_limited() const;  // time_step_limit is not (0, +infinity)
};

// Whether a parsed config.json is a Mamba2ForCausalLM's (architectures[0], else model_type "mamba2"). Never
// throws: anything else is for the Mamba-1 readers to accept or refuse.
bool is_hf_mamba2_config(const nlohmann::json& config);

// Interprets a parsed Mamba2ForCausalLM config.json; throws dendro::Error naming `source` and the key at
// fault, for inconsistent dimensions, and for what Dendro cannot honour (norm_before_gate true: HF and
// mamba_ssm disagree on its meaning; rms_norm false: LayerNorm blocks).
HfMamba2Config parse_hf_mamba2_config(const nlohmann::json& config, const std::string& source);

// Interprets a parsed config.json; throws dendro::Error naming `source` and the key at fault, and names the
// supported architectures when the checkpoint is something else.
HfMambaConfig parse_hf_mamba_config(const nlohmann::json& config, const std::string& source);

// Reads DIR/config.json (Infinity/NaN literals allowed, see hf_json.h).
HfMambaConfig read_hf_mamba_config(const std::string& dir);
HfMamba2Config read_hf_mamba2_config(const std::string& dir);

}  // namespace dendro
