#include "hf_config.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

#include "common/checked_int.h"
#include "common/error.h"
#include "hf_json.h"

namespace dendro {
namespace {

// transformers' defaults for keys a config.json may leave out (MambaConfig; Mamba2Config where named so).
constexpr int64_t kDefaultStateSize = 16;
constexpr int64_t kDefaultMamba2StateSize = 128;
constexpr int64_t kDefaultMamba2NumHeads = 128;
constexpr int64_t kDefaultMamba2HeadDim = 64;
constexpr int64_t kDefaultMamba2Groups = 8;
constexpr int64_t kDefaultMamba2ChunkSize = 256;
constexpr int64_t kDefaultConvKernel = 4;
constexpr int64_t kDefaultExpand = 2;
constexpr int64_t kTimeStepRankDivisor = 16;  // "auto": ceil(hidden_size / 16)
constexpr double kDefaultLayerNormEpsilon = 1e-5;
constexpr double kDefaultMixerRmsEps = 1e-6;
// Hyper-parameters are written to GGUF as UINT32.
constexpr int64_t kMaxDimension = std::numeric_limits<uint32_t>::max();

class ConfigReader {
public:
    ConfigReader(const nlohmann::json& config, const std::string& source) : config_(config), source_(source) {}

    // The first of `keys` present, or nullptr.
    const nlohmann::json* find(std::initializer_list<std::string_view> keys, std::string_view& found_key) const {
        for (const std::string_view key : keys) {
            const auto it = config_.find(key);
            if (it != config_.end() && !it->is_null()) {
                found_key = key;
                return &*it;
            }
        }
        return nullptr;
    }

    int64_t dimension(std::initializer_list<std::string_view> keys, std::optional<int64_t> fallback) const {
        std::string_view key;
        const nlohmann::json* value = find(keys, key);
        if (!value) {
            if (!fallback) fail(source_, ": missing key '", *keys.begin(), "'");
            return *fallback;
        }
        if (!value->is_number_integer()) fail(source_, ": key '", key, "' must be an integer, got ", value->dump());
        const std::optional<uint64_t> v = json_unsigned(*value);
        if (!v || !in_closed_range(*v, int64_t{1}, kMaxDimension)) {
            fail(source_, ": key '", key, "' = ", value->dump(), " is out of range");
        }
        return static_cast<int64_t>(*v);
    }

    double epsilon(std::string_view key, double fallback) const {
        std::string_view found;
        const nlohmann::json* value = find({key}, found);
        if (!value) return fallback;
        if (!value->is_number()) fail(source_, ": key '", key, "' must be a number, got ", value->dump());
        const double v = value->get<double>();
        if (!std::isfinite(v) || v < 0) fail(source_, ": key '", key, "' = ", v, " is not a valid epsilon");
        return v;
    }

    bool flag(std::string_view key, bool fallback) const {
        std::string_view found;
        const nlohmann::json* value = find({key}, found);
        if (!value) return fallback;
        if (!value->is_boolean()) fail(source_, ": key '", key, "' must be true or false, got ", value->dump());
        return value->get<bool>();
    }

    std::optional<std::string> string(std::string_view key) const {
        std::string_view found;
        const nlohmann::json* value = find({key}, found);
        if (!value) return std::nullopt;
        if (!value->is_string()) fail(source_, ": key '", key, "' must be a string, got ", value->dump());
        return value->get<std::string>();
    }

    const nlohmann::json& json() const { return config_; }
    const std::string& source() const { return source_; }

private:
    const nlohmann::json& config_;
    const std::string& source_;
};

// The class the checkpoint was saved from (architectures[0]), else the one its model_type maps to.
std::string architecture_of(const ConfigReader& reader) {
    constexpr std::pair<const char*, const char*> kModelTypes[] = {{"mamba", kHfMambaArchitecture},
                                                                   {"falcon_mamba", kHfFalconMambaArchitecture},
                                                                   {"mamba2", kHfMamba2Architecture}};
    const std::string supported = concat(kHfMambaArchitecture, ", ", kHfFalconMambaArchitecture, ", ",
                                         kHfMamba2Architecture, " (model_type mamba, falcon_mamba or mamba2)");
    const auto arch_it = reader.json().find("architectures");
    if (arch_it != reader.json().end() && !arch_it->is_null()) {
        if (!arch_it->is_array() || arch_it->empty() || !(*arch_it)[0].is_string()) {
            fail(reader.source(), ": 'architectures' must be a non-empty list of class names");
        }
        const std::string architecture = (*arch_it)[0].get<std::string>();
        for (const auto& [model_type, known] : kModelTypes) {
            if (architecture == known) return architecture;
        }
        fail(reader.source(), ": unsupported architecture '", architecture, "'; supported: ", supported);
    }
    const std::optional<std::string> model_type = reader.string("model_type");
    for (const auto& [type, known] : kModelTypes) {
        if (model_type == type) return known;
    }
    fail(reader.source(), ": unsupported model_type '", model_type.value_or("(none)"),
         "' and no 'architectures'; supported: ", supported);
}

void read_architecture(const ConfigReader& reader, HfMambaConfig& config) {
    config.architecture = architecture_of(reader);
    if (config.architecture == kHfMamba2Architecture) {
        fail(reader.source(), ": ", kHfMamba2Architecture, " is a Mamba-2 checkpoint, not a Mamba-1 one");
    }
    // Some Falcon-Mamba configs say model_type "mamba"; either marker means the dt/B/C norms.
    config.dt_b_c_rms =
        config.architecture == kHfFalconMambaArchitecture || reader.string("model_type") == "falcon_mamba";
}

void check_silu(const ConfigReader& reader) {
    const std::optional<std::string> activation = reader.string("hidden_act");
    if (activation && *activation != "silu") {
        fail(reader.source(), ": hidden_act '", *activation, "' is not supported (Mamba uses silu)");
    }
}

// intermediate_size from expand: expand * hidden_size, as transformers computes it (Mamba-1 when config.json
// has no intermediate_size; Mamba-2 always). expand may be fractional (1.5), so long as the product is a
// whole number of channels; `fix` ends the message when it is not.
int64_t intermediate_size_from_expand(const ConfigReader& reader, int64_t hidden_size, std::string_view fix) {
    const std::string& source = reader.source();
    std::string_view key;
    const nlohmann::json* given = reader.find({"expand"}, key);
    const nlohmann::json expand = given ? *given : nlohmann::json(kDefaultExpand);
    if (!expand.is_number()) fail(source, ": key 'expand' must be a number, got ", expand.dump());
    const std::string product_text =
        concat(source, ": intermediate_size = 'expand' ", expand.dump(), " * hidden_size ", hidden_size);
    if (expand.is_number_integer()) {
        const std::optional<uint64_t> factor = json_unsigned(expand);
        if (!factor || *factor == 0) fail(source, ": key 'expand' = ", expand.dump(), " is not positive");
        const std::optional<uint64_t> product = try_mul(*factor, static_cast<uint64_t>(hidden_size));
        if (!product) fail(product_text, " overflows");
        if (std::cmp_greater(*product, kMaxDimension)) {
            fail(product_text, " = ", *product, " is more than ", kMaxDimension);
        }
        return static_cast<int64_t>(*product);
    }
    const double factor = expand.get<double>();
    if (!(factor > 0) || !std::isfinite(factor)) fail(source, ": key 'expand' = ", expand.dump(), " is not positive");
    const double product = factor * static_cast<double>(hidden_size);
    if (product > static_cast<double>(kMaxDimension)) {
        fail(product_text, " = ", product, " is more than ", kMaxDimension);
    }
    if (product != std::floor(product)) {
        fail(product_text, " = ", product, " is not a whole number", fix);
    }
    return static_cast<int64_t>(product);
}

// One bound of time_step_limit: a number, or +infinity as Python's json writes it (the bare literal, read as
// the string "Infinity", see hf_json.h) or as transformers 5 does ({"__float__": "Infinity"}).
double time_step_bound(const nlohmann::json& value, const std::string& source) {
    constexpr std::string_view kInfinity = "Infinity";
    const nlohmann::json* text = &value;
    if (value.is_object() && value.size() == 1 && value.contains("__float__")) text = &value["__float__"];
    if (text->is_string() && text->get<std::string>() == kInfinity) return std::numeric_limits<double>::infinity();
    if (!value.is_number()) {
        fail(source, ": key 'time_step_limit' must hold two numbers, got ", value.dump());
    }
    return value.get<double>();
}

// time_step_limit: [min, max] with 0 <= min <= max (max may be +infinity); (0, +infinity) when absent.
std::pair<double, double> time_step_limit(const ConfigReader& reader) {
    std::string_view key;
    const nlohmann::json* limit = reader.find({"time_step_limit"}, key);
    if (!limit) return {0.0, std::numeric_limits<double>::infinity()};
    if (!limit->is_array() || limit->size() != 2) {
        fail(reader.source(), ": key 'time_step_limit' must be a list of two numbers, got ", limit->dump());
    }
    const double lo = time_step_bound((*limit)[0], reader.source());
    const double hi = time_step_bound((*limit)[1], reader.source());
    if (!(lo >= 0.0) || !(hi >= lo) || std::isinf(lo)) {
        fail(reader.source(), ": key 'time_step_limit' = ", limit->dump(),
             " is not an interval [min, max] with 0 <= min <= max");
    }
    return {lo, hi};
}

}  // namespace

bool is_hf_mamba2_config(const nlohmann::json& json) {
    if (!json.is_object()) return false;
    const auto architectures = json.find("architectures");
    if (architectures != json.end() && !architectures->is_null()) {
        return architectures->is_array() && !architectures->empty() && (*architectures)[0] == kHfMamba2Architecture;
    }
    const auto model_type = json.find("model_type");
    return model_type != json.end() && *model_type == "mamba2";
}

bool HfMamba2Config::time_step_limited() const {
    return time_step_min != 0.0 || time_step_max != std::numeric_limits<double>::infinity();
}

HfMamba2Config parse_hf_mamba2_config(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object()) fail(source, ": not a JSON object");
    const ConfigReader reader(json, source);
    if (architecture_of(reader) != kHfMamba2Architecture) {
        fail(source, ": not a ", kHfMamba2Architecture, " checkpoint");
    }
    check_silu(reader);
    HfMamba2Config config;
    config.vocab_size = reader.dimension({"vocab_size"}, std::nullopt);
    config.hidden_size = reader.dimension({"hidden_size", "d_model"}, std::nullopt);
    config.n_layer = reader.dimension({"num_hidden_layers", "n_layer", "n_layers", "num_layers"}, std::nullopt);
    // transformers' Mamba2 sizes its mixer from expand alone; an intermediate_size that disagrees means the
    // checkpoint was not made by it, and which of the two its weights follow is anybody's guess.
    config.intermediate_size = intermediate_size_from_expand(reader, config.hidden_size, "");
    std::string_view inner_key;
    if (reader.find({"intermediate_size", "d_inner"}, inner_key)) {
        const int64_t stated = reader.dimension({inner_key}, std::nullopt);
        if (stated != config.intermediate_size) {
            fail(source, ": key '", inner_key, "' = ", stated, " disagrees with expand * hidden_size = ",
                 config.intermediate_size, " (what transformers' Mamba2 uses)");
        }
    }
    config.num_heads = reader.dimension({"num_heads"}, kDefaultMamba2NumHeads);
    config.head_dim = reader.dimension({"head_dim"}, kDefaultMamba2HeadDim);
    const std::optional<int64_t> heads_channels = try_mul(config.num_heads, config.head_dim);
    if (heads_channels != config.intermediate_size) {
        fail(source, ": num_heads ", config.num_heads, " * head_dim ", config.head_dim,
             " must equal expand * hidden_size = ", config.intermediate_size);
    }
    config.n_groups = reader.dimension({"n_groups"}, kDefaultMamba2Groups);
    if (config.num_heads % config.n_groups != 0) {
        fail(source, ": num_heads ", config.num_heads, " is not a multiple of n_groups ", config.n_groups,
             " (the heads of a group share B and C)");
    }
    config.state_size = reader.dimension({"state_size", "d_state"}, kDefaultMamba2StateSize);
    config.conv_kernel = reader.dimension({"conv_kernel", "d_conv"}, kDefaultConvKernel);
    config.chunk_size = reader.dimension({"chunk_size"}, kDefaultMamba2ChunkSize);
    // in_proj's rows, z + x + B + C + dt, must fit a GGUF dimension.
    std::optional<int64_t> in_proj_rows = try_mul(config.n_groups, config.state_size);
    if (in_proj_rows) in_proj_rows = try_mul(*in_proj_rows, int64_t{2});
    if (in_proj_rows) in_proj_rows = try_add(*in_proj_rows, 2 * config.intermediate_size + config.num_heads);
    if (!in_proj_rows || *in_proj_rows > kMaxDimension) {
        fail(source, ": n_groups ", config.n_groups, " * state_size ", config.state_size,
             " makes an in_proj of more than ", kMaxDimension, " rows");
    }
    std::tie(config.time_step_min, config.time_step_max) = time_step_limit(reader);

    std::string_view eps_key = "layer_norm_epsilon";
    reader.find({"layer_norm_epsilon", "rms_norm_eps"}, eps_key);
    config.layer_norm_epsilon = reader.epsilon(eps_key, kDefaultLayerNormEpsilon);
    config.tie_word_embeddings = reader.flag("tie_word_embeddings", false);
    config.use_bias = reader.flag("use_bias", false);
    config.use_conv_bias = reader.flag("use_conv_bias", true);
    config.residual_in_fp32 = reader.flag("residual_in_fp32", true);
    // norm_before_gate: older Mamba2Configs default it to true (Mamba-Codestral-7B-v0.1's config.json has
    // it true), but transformers' Mamba2 never read it: its gated norm always multiplies by SiLU(z) first.
    // HF is the reference for HF checkpoints, so the key is read (a wrong type is an error) and ignored.
    // (mamba_ssm, whose module does honour it, is refused in mamba_ssm_checkpoint.cpp when it is true.)
    (void)reader.flag("norm_before_gate", false);
    // rms_norm false asks for LayerNorm blocks, which neither transformers' Mamba2 nor Dendro computes.
    if (!reader.flag("rms_norm", true)) {
        fail(source, ": rms_norm false (LayerNorm instead of RMSNorm) is not supported");
    }
    return config;
}

HfMambaConfig parse_hf_mamba_config(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object()) fail(source, ": not a JSON object");
    const ConfigReader reader(json, source);
    HfMambaConfig config;
    read_architecture(reader, config);
    check_silu(reader);
    config.vocab_size = reader.dimension({"vocab_size"}, std::nullopt);
    config.hidden_size = reader.dimension({"hidden_size", "d_model"}, std::nullopt);
    config.n_layer = reader.dimension({"num_hidden_layers", "n_layer", "n_layers", "num_layers"}, std::nullopt);
    std::string_view inner_key;
    config.intermediate_size = reader.find({"intermediate_size", "d_inner"}, inner_key)
                                   ? reader.dimension({"intermediate_size", "d_inner"}, std::nullopt)
                                   : intermediate_size_from_expand(reader, config.hidden_size, "; set intermediate_size");
    config.state_size = reader.dimension({"state_size", "d_state"}, kDefaultStateSize);
    config.conv_kernel = reader.dimension({"conv_kernel", "d_conv"}, kDefaultConvKernel);

    const int64_t auto_rank = (config.hidden_size + kTimeStepRankDivisor - 1) / kTimeStepRankDivisor;
    std::string_view rank_key;
    const nlohmann::json* rank = reader.find({"time_step_rank", "dt_rank"}, rank_key);
    config.time_step_rank = rank && rank->is_string() && rank->get<std::string>() == "auto"
                                ? auto_rank
                                : reader.dimension({"time_step_rank", "dt_rank"}, auto_rank);

    std::string_view eps_key = "layer_norm_epsilon";
    reader.find({"layer_norm_epsilon", "rms_norm_eps"}, eps_key);
    config.layer_norm_epsilon = reader.epsilon(eps_key, kDefaultLayerNormEpsilon);
    config.mixer_rms_eps = reader.epsilon("mixer_rms_eps", kDefaultMixerRmsEps);
    config.tie_word_embeddings = reader.flag("tie_word_embeddings", true);
    config.use_bias = reader.flag("use_bias", false);
    config.use_conv_bias = reader.flag("use_conv_bias", true);
    return config;
}

namespace {

std::string config_path(const std::string& dir) {
    const std::string path = (std::filesystem::path(dir) / "config.json").string();
    if (!std::filesystem::exists(path)) fail(dir, ": no config.json (expected a HF checkpoint directory)");
    return path;
}

}  // namespace

HfMambaConfig read_hf_mamba_config(const std::string& dir) {
    const std::string path = config_path(dir);
    return parse_hf_mamba_config(read_hf_json_file(path), path);
}

HfMamba2Config read_hf_mamba2_config(const std::string& dir) {
    const std::string path = config_path(dir);
    return parse_hf_mamba2_config(read_hf_json_file(path), path);
}


}  // namespace dendro
