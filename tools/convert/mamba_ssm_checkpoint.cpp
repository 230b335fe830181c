#include "mamba_ssm_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "common/checked_int.h"
#include "common/error.h"
#include "hf_json.h"
#include "safetensors.h"
#include "torch_checkpoint.h"

namespace dendro {
namespace {

constexpr const char* kConfigFileName = "config.json";
constexpr const char* kTorchIndexFileName = "pytorch_model.bin.index.json";
constexpr const char* kMamba1Layer = "Mamba1";
constexpr const char* kMamba2Layer = "Mamba2";
// MambaConfig's default (what MambaLMHeadModel.from_pretrained uses when config.json leaves it out).
constexpr int64_t kDefaultPadVocabSizeMultiple = 8;
// MixerModel's norm_epsilon: mamba_ssm's config.json does not store it; Mamba2's gated RMSNorm uses the same.
constexpr double kNormEpsilon = 1e-5;
// Hyper-parameters are written to GGUF as UINT32.
constexpr int64_t kMaxDimension = std::numeric_limits<uint32_t>::max();

// ssm_cfg keys that only concern initialisation, kernels or sharding: they do not change inference.
const std::set<std::string> kMamba1InertKeys = {"layer", "dt_min", "dt_max", "dt_init", "dt_scale",
                                                "dt_init_floor", "use_fast_path", "layer_idx"};
const std::set<std::string> kMamba1MathKeys = {"d_state", "d_conv", "expand", "dt_rank", "conv_bias", "bias"};
const std::set<std::string> kMamba2InertKeys = {"layer", "conv_init", "A_init_range", "dt_min", "dt_max",
                                                "dt_init_floor", "use_mem_eff_path", "layer_idx",
                                                "process_group", "sequence_parallel"};
const std::set<std::string> kMamba2MathKeys = {"d_state", "d_conv", "expand", "headdim", "d_ssm", "ngroups",
                                               "D_has_hdim", "rmsnorm", "norm_before_gate", "dt_limit",
                                               "bias", "conv_bias", "chunk_size"};

// Typed reads of one JSON object (the config or its ssm_cfg); errors name the source and the key.
class KeyReader {
public:
    KeyReader(const nlohmann::json& object, std::string prefix, const std::string& source)
        : object_(object), prefix_(std::move(prefix)), source_(source) {}

    const nlohmann::json* find(const std::string& key) const {
        if (!object_.is_object()) return nullptr;
        const auto it = object_.find(key);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }
    std::string name(const std::string& key) const { return prefix_ + key; }

    int64_t dimension(const std::string& key, std::optional<int64_t> fallback) const {
        const nlohmann::json* value = find(key);
        if (!value) {
            if (!fallback) fail(source_, ": missing key '", name(key), "'");
            return *fallback;
        }
        const std::optional<uint64_t> v = value->is_number_integer() ? json_unsigned(*value) : std::nullopt;
        if (!v || !in_closed_range(*v, int64_t{1}, kMaxDimension)) {
            fail(source_, ": key '", name(key), "' = ", value->dump(), " is not a positive integer of at most ", kMaxDimension);
        }
        return static_cast<int64_t>(*v);
    }
    bool flag(const std::string& key, bool fallback) const {
        const nlohmann::json* value = find(key);
        if (!value) return fallback;
        if (!value->is_boolean()) fail(source_, ": key '", name(key), "' must be true or false, got ", value->dump());
        return value->get<bool>();
    }
    // A number, or the string "Infinity" that hf_json.h makes of a bare Infinity literal.
    double number(const nlohmann::json& value, const std::string& key) const {
        if (value.is_number()) return value.get<double>();
        if (value.is_string() && value.get<std::string>() == "Infinity") return std::numeric_limits<double>::infinity();
        fail(source_, ": key '", name(key), "' must hold numbers, got ", value.dump());
    }

private:
    const nlohmann::json& object_;
    std::string prefix_;
    const std::string& source_;
};

const nlohmann::json& ssm_cfg(const nlohmann::json& config, const std::string& source) {
    static const nlohmann::json empty = nlohmann::json::object();
    const auto it = config.find("ssm_cfg");
    if (it == config.end() || it->is_null()) return empty;
    if (!it->is_object()) fail(source, ": key 'ssm_cfg' must be an object, got ", it->dump());
    return *it;
}

void check_ssm_cfg_keys(const nlohmann::json& cfg, const std::set<std::string>& inert, const std::set<std::string>& math,
                        const char* layer, const std::string& source) {
    for (const auto& [key, value] : cfg.items()) {
        if (!inert.count(key) && !math.count(key)) {
            fail(source, ": ssm_cfg key '", key, "' is not a parameter of mamba_ssm's ", layer,
                 " that Dendro knows; refusing rather than ignoring what may change the model");
        }
    }
}

// What mamba_ssm's MixerModel supports and Dendro does not; common to both layers.
void check_backbone(const KeyReader& top, const std::string& source) {
    if (const nlohmann::json* v = top.find("d_intermediate"); v && !(v->is_number_integer() && *v == 0)) {
        fail(source, ": key 'd_intermediate' = ", v->dump(), ": blocks with an MLP are not supported (only 0)");
    }
    if (const nlohmann::json* v = top.find("attn_layer_idx"); v && !(v->is_array() && v->empty())) {
        fail(source, ": key 'attn_layer_idx' = ", v->dump(), ": attention layers are not supported (only [])");
    }
    if (!top.flag("rms_norm", true)) {
        fail(source, ": key 'rms_norm' is false: LayerNorm blocks are not supported (only RMSNorm)");
    }
    if (top.flag("bidirectional", false)) fail(source, ": key 'bidirectional' is true: not supported");
}

// vocab_size rounded up to pad_vocab_size_multiple, as MambaLMHeadModel sizes its embedding.
int64_t padded_vocab_size(const KeyReader& top, const std::string& source) {
    const int64_t vocab = top.dimension("vocab_size", std::nullopt);
    const int64_t multiple = top.dimension("pad_vocab_size_multiple", kDefaultPadVocabSizeMultiple);
    const int64_t padded = checked_add(vocab, (multiple - vocab % multiple) % multiple, source, ": padded vocab_size");
    if (padded > kMaxDimension) fail(source, ": padded vocab_size ", padded, " is more than ", kMaxDimension);
    return padded;
}

// The checkpoint's tensors under HF's names.
class RenamedTensors : public CheckpointTensors {
public:
    explicit RenamedTensors(std::unique_ptr<CheckpointTensors> inner) : inner_(std::move(inner)) {
        for (const CheckpointTensor* t : inner_->tensors()) {
            CheckpointTensor renamed = *t;
            renamed.name = hf_tensor_name_of_mamba_ssm(t->name);
            const auto [it, inserted] = by_name_.emplace(renamed.name, renamed);
            if (!inserted) fail(t->file, ": tensors '", it->second.name, "' and '", t->name, "' both map to '", renamed.name, "'");
        }
    }
    const CheckpointTensor* find(std::string_view name) const override {
        const auto it = by_name_.find(name);
        return it == by_name_.end() ? nullptr : &it->second;
    }
    std::vector<const CheckpointTensor*> tensors() const override {
        std::vector<const CheckpointTensor*> all;
        for (const auto& entry : by_name_) all.push_back(&entry.second);
        return all;
    }

private:
    std::unique_ptr<CheckpointTensors> inner_;  // owns the mapped bytes the records view
    std::map<std::string, CheckpointTensor, std::less<>> by_name_;
};

std::optional<nlohmann::json> read_config_if_present(const std::string& dir, std::string& path) {
    path = (std::filesystem::path(dir) / kConfigFileName).string();
    if (!std::filesystem::exists(path)) return std::nullopt;
    return read_hf_json_file(path);
}

}  // namespace

bool is_mamba_ssm_config(const nlohmann::json& config) {
    return config.is_object() && config.contains("d_model") && config.contains("ssm_cfg");
}

MambaSsmLayer mamba_ssm_layer(const nlohmann::json& config, const std::string& source) {
    const nlohmann::json& cfg = ssm_cfg(config, source);
    const auto it = cfg.find("layer");
    if (it == cfg.end() || it->is_null()) return MambaSsmLayer::Mamba1;
    if (*it == kMamba1Layer) return MambaSsmLayer::Mamba1;
    if (*it == kMamba2Layer) return MambaSsmLayer::Mamba2;
    fail(source, ": ssm_cfg.layer ", it->dump(), " is not supported (expected \"", kMamba1Layer, "\" or \"", kMamba2Layer, "\")");
}

HfMambaConfig mamba_ssm_to_hf_mamba_config(const nlohmann::json& config, const std::string& source) {
    if (!config.is_object()) fail(source, ": not a JSON object");
    if (mamba_ssm_layer(config, source) != MambaSsmLayer::Mamba1) fail(source, ": not a Mamba1 model (ssm_cfg.layer)");
    const KeyReader top(config, "", source);
    const nlohmann::json& cfg = ssm_cfg(config, source);
    const KeyReader ssm(cfg, "ssm_cfg.", source);
    check_backbone(top, source);
    check_ssm_cfg_keys(cfg, kMamba1InertKeys, kMamba1MathKeys, kMamba1Layer, source);

    // Mamba1's defaults (d_state 16, d_conv 4, expand 2, dt_rank "auto") are transformers' MambaConfig's, so the
    // keys left out stay out; those present keep mamba_ssm's names, which the HF reader accepts as aliases.
    nlohmann::json hf = {
        {"architectures", nlohmann::json::array({kHfMambaArchitecture})},
        {"d_model", top.dimension("d_model", std::nullopt)},
        {"n_layer", top.dimension("n_layer", std::nullopt)},
        {"vocab_size", padded_vocab_size(top, source)},
        {"layer_norm_epsilon", kNormEpsilon},
        {"tie_word_embeddings", top.flag("tie_embeddings", true)},
        {"use_bias", ssm.flag("bias", false)},
        {"use_conv_bias", ssm.flag("conv_bias", true)},
    };
    for (const char* key : {"d_state", "d_conv", "expand", "dt_rank"}) {
        if (const nlohmann::json* v = ssm.find(key)) hf[key] = *v;
    }
    return parse_hf_mamba_config(hf, concat(source, " (mamba_ssm ssm_cfg)"));
}

MambaSsmMamba2Config parse_mamba_ssm_mamba2_config(const nlohmann::json& config, const std::string& source) {
    if (!config.is_object()) fail(source, ": not a JSON object");
    if (mamba_ssm_layer(config, source) != MambaSsmLayer::Mamba2) fail(source, ": not a Mamba2 model (ssm_cfg.layer)");
    const KeyReader top(config, "", source);
    const nlohmann::json& cfg = ssm_cfg(config, source);
    const KeyReader ssm(cfg, "ssm_cfg.", source);
    check_backbone(top, source);
    check_ssm_cfg_keys(cfg, kMamba2InertKeys, kMamba2MathKeys, kMamba2Layer, source);

    MambaSsmMamba2Config c;
    c.vocab_size = padded_vocab_size(top, source);
    c.d_model = top.dimension("d_model", std::nullopt);
    c.n_layer = top.dimension("n_layer", std::nullopt);
    c.tie_embeddings = top.flag("tie_embeddings", c.tie_embeddings);
    c.d_state = ssm.dimension("d_state", c.d_state);
    c.d_conv = ssm.dimension("d_conv", c.d_conv);
    c.expand = ssm.dimension("expand", c.expand);
    c.headdim = ssm.dimension("headdim", c.headdim);
    c.ngroups = ssm.dimension("ngroups", c.ngroups);
    c.chunk_size = ssm.dimension("chunk_size", c.chunk_size);
    c.norm_before_gate = ssm.flag("norm_before_gate", c.norm_before_gate);
    c.bias = ssm.flag("bias", c.bias);
    c.conv_bias = ssm.flag("conv_bias", c.conv_bias);
    c.norm_epsilon = kNormEpsilon;
    c.d_inner = checked_mul(c.expand, c.d_model, source, ": ssm_cfg.expand * d_model");
    if (c.d_inner > kMaxDimension) fail(source, ": ssm_cfg.expand * d_model = ", c.d_inner, " is too large");
    if (ssm.flag("D_has_hdim", false)) fail(source, ": ssm_cfg.D_has_hdim true (a D per channel) is not supported");
    // mamba_ssm's module honours it (normalise, then gate), which Dendro does not compute.
    if (c.norm_before_gate) fail(source, ": ssm_cfg.norm_before_gate true (normalise before the gate) is not supported");
    if (!ssm.flag("rmsnorm", true)) fail(source, ": ssm_cfg.rmsnorm false (no gated RMSNorm) is not supported");
    if (ssm.find("d_ssm") && ssm.dimension("d_ssm", std::nullopt) != c.d_inner) {
        fail(source, ": ssm_cfg.d_ssm ", ssm.dimension("d_ssm", std::nullopt), " differs from expand * d_model = ", c.d_inner,
             " (a partly gated-MLP mixer) and is not supported");
    }
    if (c.d_inner % c.headdim != 0) {
        fail(source, ": expand * d_model = ", c.d_inner, " is not a multiple of ssm_cfg.headdim ", c.headdim);
    }
    c.n_heads = c.d_inner / c.headdim;
    if (c.n_heads % c.ngroups != 0) {
        fail(source, ": ", c.n_heads, " heads are not a multiple of ssm_cfg.ngroups ", c.ngroups);
    }
    c.dt_limit_max = std::numeric_limits<double>::infinity();
    if (const nlohmann::json* limit = ssm.find("dt_limit")) {
        if (!limit->is_array() || limit->size() != 2) {
            fail(source, ": ssm_cfg.dt_limit must be [min, max], got ", limit->dump());
        }
        c.dt_limit_min = ssm.number((*limit)[0], "dt_limit");
        c.dt_limit_max = ssm.number((*limit)[1], "dt_limit");
        if (!(c.dt_limit_min >= 0) || !(c.dt_limit_max >= c.dt_limit_min) || std::isinf(c.dt_limit_min)) {
            fail(source, ": ssm_cfg.dt_limit ", limit->dump(), " is not 0 <= min <= max");
        }
    }
    return c;
}

std::string hf_tensor_name_of_mamba_ssm(std::string_view name) {
    if (name == "backbone.embedding.weight") return "backbone.embeddings.weight";
    return std::string(name);
}

HfMamba2Config mamba_ssm_to_hf_mamba2_config(const MambaSsmMamba2Config& c) {
    HfMamba2Config hf;
    hf.vocab_size = c.vocab_size;
    hf.hidden_size = c.d_model;
    hf.n_layer = c.n_layer;
    hf.intermediate_size = c.d_inner;
    hf.num_heads = c.n_heads;
    hf.head_dim = c.headdim;
    hf.state_size = c.d_state;
    hf.n_groups = c.ngroups;
    hf.conv_kernel = c.d_conv;
    hf.chunk_size = c.chunk_size;
    hf.time_step_min = c.dt_limit_min;
    hf.time_step_max = c.dt_limit_max;
    hf.layer_norm_epsilon = c.norm_epsilon;
    hf.tie_word_embeddings = c.tie_embeddings;
    hf.use_bias = c.bias;
    hf.use_conv_bias = c.conv_bias;
    return hf;
}

bool is_mamba2_checkpoint_any_layout(const std::string& dir) {
    std::string path;
    const std::optional<nlohmann::json> config = read_config_if_present(dir, path);
    if (!config) return false;
    if (is_mamba_ssm_config(*config)) return mamba_ssm_layer(*config, path) == MambaSsmLayer::Mamba2;
    return is_hf_mamba2_config(*config);
}

HfMamba2Config read_mamba2_config_any_layout(const std::string& dir) {
    std::string path;
    const std::optional<nlohmann::json> config = read_config_if_present(dir, path);
    if (config && is_mamba_ssm_config(*config)) {
        return mamba_ssm_to_hf_mamba2_config(parse_mamba_ssm_mamba2_config(*config, path));
    }
    return read_hf_mamba2_config(dir);
}

HfMambaConfig read_mamba_config_any_layout(const std::string& dir) {
    std::string path;
    const std::optional<nlohmann::json> config = read_config_if_present(dir, path);
    if (!config || !is_mamba_ssm_config(*config)) return read_hf_mamba_config(dir);
    if (mamba_ssm_layer(*config, path) == MambaSsmLayer::Mamba2) {
        fail(path, ": a mamba_ssm Mamba2 model (ssm_cfg.layer \"Mamba2\"): read it with read_mamba2_config_any_layout");
    }
    return mamba_ssm_to_hf_mamba_config(*config, path);
}

std::unique_ptr<CheckpointTensors> open_checkpoint_tensors(const std::string& dir) {
    namespace fs = std::filesystem;
    std::unique_ptr<CheckpointTensors> tensors;
    if (fs::exists(fs::path(dir) / SafetensorsCheckpoint::kSingleFileName) ||
        fs::exists(fs::path(dir) / SafetensorsCheckpoint::kIndexFileName)) {
        tensors = SafetensorsCheckpoint::open(dir);
    } else if (fs::exists(fs::path(dir) / TorchCheckpoint::kFileName)) {
        tensors = TorchCheckpoint::open((fs::path(dir) / TorchCheckpoint::kFileName).string());
    } else if (fs::exists(fs::path(dir) / kTorchIndexFileName)) {
        fail(dir, ": sharded pytorch_model-*.bin checkpoints (", kTorchIndexFileName,
             ") are not supported; save the state dict as one pytorch_model.bin or as safetensors");
    } else {
        fail(dir, ": no ", SafetensorsCheckpoint::kSingleFileName, ", ", SafetensorsCheckpoint::kIndexFileName, " or ",
             TorchCheckpoint::kFileName);
    }
    std::string path;
    const std::optional<nlohmann::json> config = read_config_if_present(dir, path);
    if (config && is_mamba_ssm_config(*config)) return std::make_unique<RenamedTensors>(std::move(tensors));
    return tensors;
}

}  // namespace dendro
