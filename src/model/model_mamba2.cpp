// llama.cpp's architecture "mamba2": the SSD mixer of Mamba-2 and Codestral Mamba. Shapes as llama.cpp's
// converter writes them (A and D as {1, n_head}, the norm weight as {d_inner / n_group, n_group}); the
// same elements without the size-1 or group axes are accepted too.
#include "model/architectures.h"

#include "common/error.h"

namespace dendro {

ModelHparams read_mamba2_hparams(const TensorLoader& loader) {
    ModelHparams hp;
    hp.arch = Architecture::Mamba2;
    hp.d_model = loader.dimension_key("mamba2.embedding_length");
    hp.n_layer = loader.dimension_key("mamba2.block_count");
    hp.d_conv = loader.dimension_key("mamba2.ssm.conv_kernel");
    hp.d_inner = loader.dimension_key("mamba2.ssm.inner_size");
    hp.d_state = loader.dimension_key("mamba2.ssm.state_size");
    hp.n_head = loader.dimension_key("mamba2.ssm.time_step_rank");
    hp.n_group = loader.dimension_key("mamba2.ssm.group_count");
    hp.norm_eps = loader.epsilon_key("mamba2.attention.layer_norm_rms_epsilon", std::nullopt);
    hp.time_step_min = loader.float_key(kTimeStepMinKey, hp.time_step_min);
    hp.time_step_max = loader.float_key(kTimeStepMaxKey, hp.time_step_max);

    const std::string& path = loader.file().path();
    if (hp.d_inner % hp.n_head != 0) {
        fail(path, ": mamba2.ssm.inner_size ", hp.d_inner, " is not a multiple of the head count (time_step_rank) ",
             hp.n_head);
    }
    if (hp.n_head % hp.n_group != 0) {
        fail(path, ": the head count (mamba2.ssm.time_step_rank) ", hp.n_head,
             " is not a multiple of mamba2.ssm.group_count ", hp.n_group);
    }
    if (!(hp.time_step_min >= 0.0f) || !(hp.time_step_max >= hp.time_step_min)) {
        fail(path, ": time-step limit [", hp.time_step_min, ", ", hp.time_step_max, "] (keys ", kTimeStepMinKey,
             ", ", kTimeStepMaxKey, ") is not an interval of non-negative values");
    }
    hp.head_dim = hp.d_inner / hp.n_head;
    return hp;
}

LayerWeights load_mamba2_layer(const TensorLoader& loader, const ModelHparams& hp, int64_t il) {
    const auto name = [il](const char* suffix) { return layer_tensor_name(il, suffix); };
    const int64_t conv = hp.conv_channels(), in_rows = hp.in_proj_rows();
    TensorView attn_norm = loader.tensor(name("attn_norm.weight"), {hp.d_model}, false);
    Mamba2Mixer m;
    m.ssm_in = loader.tensor(name("ssm_in.weight"), {hp.d_model, in_rows}, true);
    m.ssm_in_b = loader.optional_tensor(name("ssm_in.bias"), {in_rows}, false);
    m.conv1d_w = loader.reshaped_tensor(name("ssm_conv1d.weight"), {hp.d_conv, conv}, {{hp.d_conv, conv}, {hp.d_conv, 1, conv}});
    m.conv1d_b = loader.optional_tensor(name("ssm_conv1d.bias"), {conv}, false);
    m.ssm_dt_b = loader.tensor(name("ssm_dt.bias"), {hp.n_head}, false);
    m.ssm_a = loader.reshaped_tensor(name("ssm_a"), {hp.n_head}, {{hp.n_head}, {1, hp.n_head}});
    m.ssm_d = loader.reshaped_tensor(name("ssm_d"), {hp.n_head}, {{hp.n_head}, {1, hp.n_head}});
    m.ssm_norm = loader.reshaped_tensor(name("ssm_norm.weight"), {hp.d_inner},
                                        {{hp.d_inner / hp.n_group, hp.n_group}, {hp.d_inner}});
    m.ssm_out = loader.tensor(name("ssm_out.weight"), {hp.d_inner, hp.d_model}, true);
    m.ssm_out_b = loader.optional_tensor(name("ssm_out.bias"), {hp.d_model}, false);
    return LayerWeights{std::move(attn_norm), std::move(m)};
}

}  // namespace dendro
