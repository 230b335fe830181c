#include "hf_config.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "common/checked_int.h"
#include "common/error.h"
#include "hf_json.h"

namespace dendro {
namespace {

// transformers' defaults for keys a config.json may leave out.
constexpr int64_t kDefaultStateSize = 16;
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
void read_architecture(const ConfigReader& reader, HfMambaConfig& config) {
    const std::string supported =
        concat(kHfMambaArchitecture, ", ", kHfFalconMambaArchitecture, " (model_type mamba or falcon_mamba)");
    const std::optional<std::string> model_type = reader.string("model_type");
    const auto arch_it = reader.json().find("architectures");
    if (arch_it != reader.json().end() && !arch_it->is_null()) {
        if (!arch_it->is_array() || arch_it->empty() || !(*arch_it)[0].is_string()) {
            fail(reader.source(), ": 'architectures' must be a non-empty list of class names");
        }
        config.architecture = (*arch_it)[0].get<std::string>();
        if (config.architecture != kHfMambaArchitecture && config.architecture != kHfFalconMambaArchitecture) {
            fail(reader.source(), ": unsupported architecture '", config.architecture, "'; supported: ", supported);
        }
    } else if (model_type == "mamba") {
        config.architecture = kHfMambaArchitecture;
    } else if (model_type == "falcon_mamba") {
        config.architecture = kHfFalconMambaArchitecture;
    } else {
        fail(reader.source(), ": unsupported model_type '", model_type.value_or("(none)"),
             "' and no 'architectures'; supported: ", supported);
    }
    // Some Falcon-Mamba configs say model_type "mamba"; either marker means the dt/B/C norms.
    config.dt_b_c_rms = config.architecture == kHfFalconMambaArchitecture || model_type == "falcon_mamba";
}

// intermediate_size when config.json leaves it out: expand * hidden_size, as transformers computes it. expand
// may be fractional (1.5), so long as the product is a whole number of channels.
int64_t intermediate_size_from_expand(const ConfigReader& reader, int64_t hidden_size) {
    const std::string& source = reader.source();
    std::string_view key;
    const nlohmann::json* given = reader.find({"expand"}, key);
    const nlohmann::json expand = given ? *given : nlohmann::json(kDefaultExpand);
    if (!expand.is_number()) fail(source, ": key 'expand' must be a number, got ", expand.dump());
    const std::string product_text =
        concat(source, ": no intermediate_size, and 'expand' ", expand.dump(), " * hidden_size ", hidden_size);
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
        fail(product_text, " = ", product, " is not a whole number; set intermediate_size");
    }
    return static_cast<int64_t>(product);
}

}  // namespace

HfMambaConfig parse_hf_mamba_config(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object()) fail(source, ": not a JSON object");
    const ConfigReader reader(json, source);
    HfMambaConfig config;
    read_architecture(reader, config);

    const std::optional<std::string> activation = reader.string("hidden_act");
    if (activation && *activation != "silu") {
        fail(source, ": hidden_act '", *activation, "' is not supported (Mamba uses silu)");
    }
    config.vocab_size = reader.dimension({"vocab_size"}, std::nullopt);
    config.hidden_size = reader.dimension({"hidden_size", "d_model"}, std::nullopt);
    config.n_layer = reader.dimension({"num_hidden_layers", "n_layer", "n_layers", "num_layers"}, std::nullopt);
    std::string_view inner_key;
    config.intermediate_size = reader.find({"intermediate_size", "d_inner"}, inner_key)
                                   ? reader.dimension({"intermediate_size", "d_inner"}, std::nullopt)
                                   : intermediate_size_from_expand(reader, config.hidden_size);
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

HfMambaConfig read_hf_mamba_config(const std::string& dir) {
    const std::string path = (std::filesystem::path(dir) / "config.json").string();
    if (!std::filesystem::exists(path)) fail(dir, ": no config.json (expected a HF checkpoint directory)");
    return parse_hf_mamba_config(read_hf_json_file(path), path);
}

}  // namespace dendro
