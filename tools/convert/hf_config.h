// config.json of a HF Mamba-1 checkpoint: MambaForCausalLM or FalconMambaForCausalLM. Key names and
// defaults follow transformers' MambaConfig / FalconMambaConfig; the aliases llama.cpp's converter accepts
// (d_model, n_layer, d_inner, d_state, d_conv, dt_rank, rms_norm_eps) are read too.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace dendro {

inline constexpr const char* kHfMambaArchitecture = "MambaForCausalLM";
inline constexpr const char* kHfFalconMambaArchitecture = "FalconMambaForCausalLM";

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

// Interprets a parsed config.json; throws dendro::Error naming `source` and the key at fault, and names the
// supported architectures when the checkpoint is something else.
HfMambaConfig parse_hf_mamba_config(const nlohmann::json& config, const std::string& source);

// Reads DIR/config.json (Infinity/NaN literals allowed, see hf_json.h).
HfMambaConfig read_hf_mamba_config(const std::string& dir);

}  // namespace dendro
