#include "serve/request.h"

#include <cmath>
#include <set>

#include "common/error.h"
#include "serve/api_error.h"

namespace dendro::serve {
namespace {

using nlohmann::json;

// OpenAI's range for temperature.
constexpr double kMaxTemperature = 2.0;

const std::set<std::string>& known_fields(Endpoint endpoint) {
    static const std::set<std::string> completions = {"model", "prompt", "max_tokens",         "temperature", "top_p",
                                                      "top_k", "min_p",  "repetition_penalty", "seed",        "stop",
                                                      "n",     "stream", "stream_options",     "logprobs",    "user"};
    static const std::set<std::string> chat = {
        "model",        "messages", "max_tokens", "max_completion_tokens", "temperature",
        "top_p",        "top_k",    "min_p",      "repetition_penalty",    "seed",
        "stop",         "n",        "stream",     "stream_options",        "logprobs",
        "top_logprobs", "user"};
    return endpoint == Endpoint::Completions ? completions : chat;
}

const char* type_name(const json& value) { return value.type_name(); }

double number_field(const json& body, const std::string& key) {
    const json& v = body.at(key);
    if (!v.is_number()) {
        throw invalid_request(key, concat("'", key, "' must be a number, got ", type_name(v)), "invalid_type");
    }
    return v.get<double>();
}

int64_t integer_field(const json& body, const std::string& key) {
    const json& v = body.at(key);
    if (!v.is_number_integer()) {
        throw invalid_request(key, concat("'", key, "' must be an integer, got ", type_name(v)), "invalid_type");
    }
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        throw invalid_request(key, concat("'", key, "' is too large"));
    }
    return v.get<int64_t>();
}

bool bool_field(const json& body, const std::string& key) {
    const json& v = body.at(key);
    if (!v.is_boolean()) {
        throw invalid_request(key, concat("'", key, "' must be a boolean, got ", type_name(v)), "invalid_type");
    }
    return v.get<bool>();
}

const std::string& string_field(const json& body, const std::string& key) {
    const json& v = body.at(key);
    if (!v.is_string()) {
        throw invalid_request(key, concat("'", key, "' must be a string, got ", type_name(v)), "invalid_type");
    }
    return v.get_ref<const std::string&>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_content(const json& message, const std::string& where) {
    if (!message.contains("content")) throw invalid_request(where, concat(where, " has no 'content'"));
    const json& content = message.at("content");
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array()) {
        throw invalid_request(where, concat(where, ".content must be a string or an array of text parts"),
                              "invalid_type");
    }
    std::string text;
    for (const json& part : content) {
        if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
            throw invalid_request(
                where, concat(where, ".content: only {\"type\": \"text\", \"text\": ...} parts are supported"));
        }
        text += part["text"].get<std::string>();
    }
    return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
    if (!body.contains("messages")) {
        throw invalid_request("messages", "'messages' is required", "missing_required_parameter");
    }
    const json& list = body.at("messages");
    if (!list.is_array()) {
        throw invalid_request("messages", concat("'messages' must be an array, got ", type_name(list)), "invalid_type");
    }
    if (list.empty()) throw invalid_request("messages", "'messages' must not be empty");
    std::vector<ChatMessage> messages;
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string where = concat("messages[", i, "]");
        const json& m = list[i];
        if (!m.is_object()) throw invalid_request(where, concat(where, " must be an object"), "invalid_type");
        for (const auto& [key, value] : m.items()) {
            if (key != "role" && key != "content" && key != "name") {
                throw invalid_request(where, concat(where, " has an unknown field '", key, "'"), "unknown_parameter");
            }
        }
        if (!m.contains("role") || !m["role"].is_string()) {
            throw invalid_request(where, concat(where, ".role must be a string"));
        }
        const std::string role = m["role"].get<std::string>();
        if (role != "system" && role != "user" && role != "assistant") {
            throw invalid_request(where, concat(where, ".role must be system, user or assistant, got '", role, "'"));
        }
        messages.push_back({role, message_content(m, where)});
    }
    return messages;
}

std::vector<std::string> parse_stop(const json& body, const RequestLimits& limits) {
    const json& v = body.at("stop");
    std::vector<std::string> stop;
    if (v.is_null()) return stop;
    if (v.is_string()) {
        stop.push_back(v.get<std::string>());
    } else if (v.is_array()) {
        for (const json& s : v) {
            if (!s.is_string()) {
                throw invalid_request("stop", "'stop' must be a string or an array of strings", "invalid_type");
            }
            stop.push_back(s.get<std::string>());
        }
    } else {
        throw invalid_request("stop", concat("'stop' must be a string or an array of strings, got ", type_name(v)),
                              "invalid_type");
    }
    if (stop.size() > limits.max_stop_strings) {
        throw invalid_request("stop", concat("at most ", limits.max_stop_strings, " stop strings, got ", stop.size()));
    }
    for (const std::string& s : stop) {
        if (s.empty()) throw invalid_request("stop", "stop strings must not be empty");
    }
    return stop;
}

}  // namespace

json parse_json_body(const std::string& text) {
    json body;
    try {
        body = json::parse(text);
    } catch (const json::parse_error& e) {
        throw ApiError(kHttpBadRequest, "invalid_request_error", concat("the body is not valid JSON: ", e.what()), "",
                       "invalid_json");
    }
    if (!body.is_object()) {
        throw ApiError(kHttpBadRequest, "invalid_request_error",
                       concat("the body must be a JSON object, got ", body.type_name()), "", "invalid_json");
    }
    return body;
}

GenerationRequest parse_generation_request(Endpoint endpoint, const json& body, const RequestLimits& limits) {
    const std::set<std::string>& known = known_fields(endpoint);
    for (const auto& [key, value] : body.items()) {
        if (!known.count(key)) throw invalid_request(key, concat("unknown field '", key, "'"), "unknown_parameter");
    }
    GenerationRequest req;
    req.endpoint = endpoint;
    // OpenAI's defaults, not the command line's.
    req.sampling.temperature = 1.0f;
    req.sampling.top_p = 1.0f;
    req.sampling.top_k = 0;
    req.sampling.min_p = 0.0f;
    req.sampling.repeat_penalty = 1.0f;

    if (body.contains("model")) req.model = string_field(body, "model");
    if (endpoint == Endpoint::Completions) {
        if (!body.contains("prompt")) {
            throw invalid_request("prompt", "'prompt' is required", "missing_required_parameter");
        }
        req.prompt = string_field(body, "prompt");
        if (req.prompt.empty()) throw invalid_request("prompt", "'prompt' must not be empty");
    } else {
        req.messages = parse_messages(body);
    }
    if (body.contains("stream")) req.stream = bool_field(body, "stream");
    if (body.contains("stream_options") && !body["stream_options"].is_null()) {
        const json& options = body["stream_options"];
        if (!options.is_object()) {
            throw invalid_request("stream_options", "'stream_options' must be an object", "invalid_type");
        }
        for (const auto& [key, value] : options.items()) {
            if (key != "include_usage") {
                throw invalid_request("stream_options", concat("unknown field 'stream_options.", key, "'"),
                                      "unknown_parameter");
            }
            req.include_usage_in_stream = bool_field(options, key);
        }
        if (!req.stream) throw invalid_request("stream_options", "'stream_options' is only allowed with stream: true");
    }

    req.max_tokens = std::min(limits.default_max_tokens, limits.max_tokens);
    for (const char* key : {"max_tokens", "max_completion_tokens"}) {
        if (!body.contains(key) || body[key].is_null()) continue;
        const int64_t n = integer_field(body, key);
        if (n < 1 || n > limits.max_tokens) {
            throw invalid_request(key, concat("'", key, "' must be in [1, ", limits.max_tokens, "], got ", n));
        }
        req.max_tokens = static_cast<int32_t>(n);
    }
    if (body.contains("n") && !body["n"].is_null() && integer_field(body, "n") != 1) {
        throw invalid_request("n", "only n = 1 is supported");
    }

    SamplingParams& s = req.sampling;
    if (body.contains("temperature") && !body["temperature"].is_null()) {
        const double t = number_field(body, "temperature");
        if (!(t >= 0.0 && t <= kMaxTemperature)) {
            throw invalid_request("temperature", concat("'temperature' must be in [0, 2], got ", t));
        }
        s.temperature = static_cast<float>(t);
    }
    if (body.contains("top_p") && !body["top_p"].is_null()) {
        const double p = number_field(body, "top_p");
        if (!(p > 0.0 && p <= 1.0)) throw invalid_request("top_p", concat("'top_p' must be in (0, 1], got ", p));
        s.top_p = static_cast<float>(p);
    }
    if (body.contains("top_k") && !body["top_k"].is_null()) {
        const int64_t k = integer_field(body, "top_k");
        if (k < 0 || k > INT32_MAX) throw invalid_request("top_k", concat("'top_k' must be >= 0 (0 = off), got ", k));
        s.top_k = static_cast<int32_t>(k);
    }
    if (body.contains("min_p") && !body["min_p"].is_null()) {
        const double p = number_field(body, "min_p");
        if (!(p >= 0.0 && p <= 1.0)) throw invalid_request("min_p", concat("'min_p' must be in [0, 1], got ", p));
        s.min_p = static_cast<float>(p);
    }
    if (body.contains("repetition_penalty") && !body["repetition_penalty"].is_null()) {
        const double r = number_field(body, "repetition_penalty");
        if (!(r > 0.0) || !std::isfinite(r)) {
            throw invalid_request("repetition_penalty", concat("'repetition_penalty' must be > 0, got ", r));
        }
        s.repeat_penalty = static_cast<float>(r);
    }
    if (body.contains("seed") && !body["seed"].is_null()) {
        const int64_t seed = integer_field(body, "seed");
        if (seed < 0) throw invalid_request("seed", concat("'seed' must be >= 0, got ", seed));
        s.seed = static_cast<uint64_t>(seed);
        req.seed_given = true;
    }
    if (body.contains("stop")) req.stop = parse_stop(body, limits);

    if (endpoint == Endpoint::Completions) {
        if (body.contains("logprobs") && !body["logprobs"].is_null()) {
            const int64_t n = integer_field(body, "logprobs");
            if (n < 0 || n > limits.max_top_logprobs) {
                throw invalid_request("logprobs",
                                      concat("'logprobs' must be in [0, ", limits.max_top_logprobs, "], got ", n));
            }
            req.top_logprobs = static_cast<int32_t>(n);
        }
    } else {
        const bool wanted = body.contains("logprobs") && !body["logprobs"].is_null() && bool_field(body, "logprobs");
        if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
            const int64_t n = integer_field(body, "top_logprobs");
            if (!wanted) throw invalid_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            if (n < 0 || n > limits.max_top_logprobs) {
                throw invalid_request("top_logprobs",
                                      concat("'top_logprobs' must be in [0, ", limits.max_top_logprobs, "], got ", n));
            }
            req.top_logprobs = static_cast<int32_t>(n);
        } else if (wanted) {
            req.top_logprobs = 0;
        }
    }
    if (body.contains("user") && !body["user"].is_null()) string_field(body, "user");  // accepted, unused
    s.validate();  // the checks above are the API's; this one is the sampler's own
    return req;
}

}  // namespace dendro::serve
