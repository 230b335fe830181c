// The original state-spaces layout, as mamba_ssm's MambaLMHeadModel saves it: a config.json of mamba_ssm's
// MambaConfig (d_model, n_layer, vocab_size, ssm_cfg {layer: "Mamba1" | "Mamba2", ...}, rms_norm,
// residual_in_fp32, fused_add_norm, pad_vocab_size_multiple, tie_embeddings) beside pytorch_model.bin.
// Its hyper-parameters are mapped to the HF configs the converter reads, with mamba_ssm's defaults and its
// vocabulary padding (vocab_size rounded up to pad_vocab_size_multiple: the embedding has the padded rows),
// and its tensor names to HF's (backbone.embedding.weight -> backbone.embeddings.weight; the layers'
// backbone.layers.N.norm / .mixer.* names are already HF's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "checkpoint_tensors.h"
#include "hf_config.h"

namespace dendro {

enum class MambaSsmLayer { Mamba1, Mamba2 };

// Whether a config.json is mamba_ssm's (it has d_model and ssm_cfg) rather than HF's.
bool is_mamba_ssm_config(const nlohmann::json& config);

// ssm_cfg.layer ("Mamba1" when absent); throws naming `source` for any other value.
MambaSsmLayer mamba_ssm_layer(const nlohmann::json& config, const std::string& source);

// A Mamba-1 mamba_ssm config as the HF MambaForCausalLM config the converter uses. Throws naming `source`
// and the key for what the math depends on and Dendro cannot honour: LayerNorm blocks (rms_norm false),
// MLP blocks (d_intermediate > 0), attention layers (attn_layer_idx), unknown ssm_cfg keys.
HfMambaConfig mamba_ssm_to_hf_mamba_config(const nlohmann::json& config, const std::string& source);

// The hyper-parameters of a Mamba-2 mamba_ssm model (defaults: mamba_ssm's Mamba2 module). They map to HF's
// Mamba2Config as: hidden_size = d_model, num_hidden_layers = n_layer, vocab_size = vocab_size (padded),
// state_size = d_state, conv_kernel = d_conv, expand = expand (intermediate_size = d_inner),
// head_dim = headdim, num_heads = n_heads, n_groups = ngroups, chunk_size, time_step_limit =
// [dt_limit_min, dt_limit_max], use_bias = bias, use_conv_bias = conv_bias, norm_before_gate,
// rms_norm = true, layer_norm_epsilon = norm_epsilon (the block norms and the gated norm alike),
// tie_word_embeddings = tie_embeddings.
struct MambaSsmMamba2Config {
    int64_t vocab_size = 0;  // padded to pad_vocab_size_multiple
    int64_t d_model = 0;
    int64_t n_layer = 0;
    int64_t d_state = 128;
    int64_t d_conv = 4;
    int64_t expand = 2;
    int64_t d_inner = 0;  // expand * d_model
    int64_t headdim = 64;
    int64_t n_heads = 0;  // d_inner / headdim
    int64_t ngroups = 1;
    int64_t chunk_size = 256;
    double dt_limit_min = 0.0;
    double dt_limit_max = 0.0;  // +infinity unless ssm_cfg.dt_limit says otherwise
    bool norm_before_gate = false;
    bool bias = false;       // in_proj / out_proj biases
    bool conv_bias = true;
    bool tie_embeddings = true;
    double norm_epsilon = 1e-5;
};

// Throws as mamba_ssm_to_hf_mamba_config does, and also for D_has_hdim, rmsnorm false, d_ssm != d_inner
// (a partly gated-MLP mixer), and dimensions that do not divide (d_inner by headdim, heads by ngroups).
MambaSsmMamba2Config parse_mamba_ssm_mamba2_config(const nlohmann::json& config, const std::string& source);

// The HF Mamba2Config a mamba_ssm Mamba-2 config stands for (the mapping above).
HfMamba2Config mamba_ssm_to_hf_mamba2_config(const MambaSsmMamba2Config& config);

// The HF tensor name of a mamba_ssm one.
std::string hf_tensor_name_of_mamba_ssm(std::string_view name);

// Whether DIR's config.json describes a Mamba-2 model, in HF's layout or mamba_ssm's (false without one).
bool is_mamba2_checkpoint_any_layout(const std::string& dir);
// The Mamba-2 config of DIR's config.json, whichever layout (HF or mamba_ssm) it has.
HfMamba2Config read_mamba2_config_any_layout(const std::string& dir);

// The Mamba-1 config of DIR's config.json, whichever layout (HF or mamba_ssm) it has.
HfMambaConfig read_mamba_config_any_layout(const std::string& dir);

// The weights of DIR: model.safetensors (or its shards), else pytorch_model.bin; with mamba_ssm's config.json
// their names are mapped to HF's. Throws naming DIR when there are none.
std::unique_ptr<CheckpointTensors> open_checkpoint_tensors(const std::string& dir);

}  // namespace dendro
