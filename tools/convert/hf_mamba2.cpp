#include "hf_mamba2.h"

#include "common/error.h"
#include "model/model.h"

namespace dendro {

std::vector<HfTensorMapping> hf_mamba2_tensor_mappings(const HfMamba2Config& cfg) {
    const int64_t d_model = cfg.hidden_size, d_inner = cfg.intermediate_size, n_head = cfg.num_heads;
    const int64_t n_group = cfg.n_groups, d_conv = cfg.conv_kernel, conv_dim = cfg.conv_dim();
    const int64_t in_rows = cfg.in_proj_rows();

    std::vector<HfTensorMapping> mappings;
    mappings.push_back({"token_embd.weight", kHfMamba2EmbeddingName, {cfg.vocab_size, d_model}, {d_model, cfg.vocab_size},
                        true});
    for (int64_t il = 0; il < cfg.n_layer; ++il) {
        const std::string hf = concat("backbone.layers.", il, ".");
        const std::string m = hf + "mixer.";
        const auto blk = [il](const char* suffix) { return concat("blk.", il, ".", suffix); };
        mappings.push_back({blk("attn_norm.weight"), hf + "norm.weight", {d_model}, {d_model}});
        mappings.push_back({blk("ssm_in.weight"), m + "in_proj.weight", {in_rows, d_model}, {d_model, in_rows}, true});
        mappings.push_back({blk("ssm_in.bias"), m + "in_proj.bias", {in_rows}, {in_rows}, false, false, "use_bias",
                            cfg.use_bias});
        mappings.push_back({blk("ssm_conv1d.weight"), m + "conv1d.weight", {conv_dim, 1, d_conv}, {d_conv, conv_dim}});
        mappings.push_back({blk("ssm_conv1d.bias"), m + "conv1d.bias", {conv_dim}, {conv_dim}, false, false,
                            "use_conv_bias", cfg.use_conv_bias});
        mappings.push_back({blk("ssm_dt.bias"), m + "dt_bias", {n_head}, {n_head}});
        mappings.push_back({blk("ssm_a"), m + "A_log", {n_head}, {1, n_head}, false, true});
        mappings.push_back({blk("ssm_d"), m + "D", {n_head}, {1, n_head}});
        mappings.push_back({blk("ssm_norm.weight"), m + "norm.weight", {d_inner}, {d_inner / n_group, n_group}});
        mappings.push_back({blk("ssm_out.weight"), m + "out_proj.weight", {d_model, d_inner}, {d_inner, d_model}, true});
        mappings.push_back({blk("ssm_out.bias"), m + "out_proj.bias", {d_model}, {d_model}, false, false, "use_bias",
                            cfg.use_bias});
    }
    mappings.push_back({"output_norm.weight", "backbone.norm_f.weight", {d_model}, {d_model}});
    return mappings;
}

void set_hf_mamba2_metadata(const HfMamba2Config& cfg, GgufWriter& writer) {
    const std::string arch = architecture_name(Architecture::Mamba2);
    const auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
    writer.set(arch + ".ssm.conv_kernel", u32(cfg.conv_kernel));
    writer.set(arch + ".ssm.inner_size", u32(cfg.intermediate_size));
    writer.set(arch + ".ssm.state_size", u32(cfg.state_size));
    writer.set(arch + ".ssm.time_step_rank", u32(cfg.num_heads));  // llama.cpp's name for the head count
    writer.set(arch + ".ssm.group_count", u32(cfg.n_groups));
    writer.set(arch + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(cfg.layer_norm_epsilon)));
    if (cfg.time_step_limited()) {
        writer.set(kTimeStepMinKey, GgufValue::f32(static_cast<float>(cfg.time_step_min)));
        writer.set(kTimeStepMaxKey, GgufValue::f32(static_cast<float>(cfg.time_step_max)));
    }
}

}  // namespace dendro
