// llama.cpp's architecture "mamba": Mamba-1 and Falcon-Mamba (dt_b_c_rms).
#include "model/architectures.h"

namespace dendro {

ModelHparams read_mamba1_hparams(const TensorLoader& loader) {
    ModelHparams hp;
    hp.arch = Architecture::Mamba1;
    hp.d_model = loader.dimension_key("mamba.embedding_length");
    hp.n_layer = loader.dimension_key("mamba.block_count");
    hp.d_conv = loader.dimension_key("mamba.ssm.conv_kernel");
    hp.d_inner = loader.dimension_key("mamba.ssm.inner_size");
    hp.d_state = loader.dimension_key("mamba.ssm.state_size");
    hp.dt_rank = loader.dimension_key("mamba.ssm.time_step_rank");
    hp.norm_eps = loader.epsilon_key("mamba.attention.layer_norm_rms_epsilon", std::nullopt);
    hp.dt_b_c_rms = loader.bool_key("mamba.ssm.dt_b_c_rms", false);
    hp.mixer_rms_eps = loader.epsilon_key(kMixerRmsEpsKey, hp.mixer_rms_eps);
    return hp;
}

LayerWeights load_mamba1_layer(const TensorLoader& loader, const ModelHparams& hp, int64_t il) {
    const auto name = [il](const char* suffix) { return layer_tensor_name(il, suffix); };
    const int64_t n_xdbc = hp.dt_rank + 2 * hp.d_state;
    // In file order, so that a missing layer is named by its first tensor.
    TensorView attn_norm = loader.tensor(name("attn_norm.weight"), {hp.d_model}, false);
    Mamba1Mixer m;
    m.ssm_in = loader.tensor(name("ssm_in.weight"), {hp.d_model, 2 * hp.d_inner}, true);
    m.ssm_in_b = loader.optional_tensor(name("ssm_in.bias"), {2 * hp.d_inner}, false);
    m.conv1d_w = loader.reshaped_tensor(name("ssm_conv1d.weight"), {hp.d_conv, hp.d_inner},
                                        {{hp.d_conv, hp.d_inner}, {hp.d_conv, 1, hp.d_inner}});
    m.conv1d_b = loader.optional_tensor(name("ssm_conv1d.bias"), {hp.d_inner}, false);
    m.ssm_x = loader.tensor(name("ssm_x.weight"), {hp.d_inner, n_xdbc}, true);
    m.ssm_dt_w = loader.tensor(name("ssm_dt.weight"), {hp.dt_rank, hp.d_inner}, true);
    m.ssm_dt_b = loader.tensor(name("ssm_dt.bias"), {hp.d_inner}, false);
    m.ssm_a = loader.tensor(name("ssm_a"), {hp.d_state, hp.d_inner}, false);
    m.ssm_d = loader.tensor(name("ssm_d"), {hp.d_inner}, false);
    m.ssm_out = loader.tensor(name("ssm_out.weight"), {hp.d_inner, hp.d_model}, true);
    m.ssm_out_b = loader.optional_tensor(name("ssm_out.bias"), {hp.d_model}, false);
    return LayerWeights{std::move(attn_norm), std::move(m)};
}

}  // namespace dendro
