// The body of POST /v1/completions and /v1/chat/completions parsed and validated: wrong types, unknown
// fields, out-of-range sampling values and budgets over the server's limits are ApiErrors (HTTP 400) that
// name the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "generate/sampler.h"
#include "serve/chat_format.h"

namespace dendro::serve {

enum class Endpoint { Completions, ChatCompletions };

struct RequestLimits {
    int32_t max_tokens = 4096;         // the most a request may ask for
    int32_t default_max_tokens = 256;  // when it does not say (capped by max_tokens)
    int32_t max_top_logprobs = 20;     // alternatives per token
    size_t max_stop_strings = 4;
};

struct GenerationRequest {
    Endpoint endpoint = Endpoint::Completions;
    std::string model;                  // as the client named it (echoed back)
    std::string prompt;                 // completions
    std::vector<ChatMessage> messages;  // chat
    bool stream = false;
    bool include_usage_in_stream = false;  // stream_options.include_usage
    int32_t max_tokens = 0;
    SamplingParams sampling;  // OpenAI's defaults: temperature 1, top_p 1, no top-k or min-p
    bool seed_given = false;
    std::vector<std::string> stop;
    int32_t top_logprobs = -1;  // -1: no logprobs; else the alternatives per generated token
};

// Throws ApiError for any problem of the body (not yet parsed from text: see parse_json_body).
GenerationRequest parse_generation_request(Endpoint endpoint, const nlohmann::json& body, const RequestLimits& limits);

// The body's JSON; an ApiError quoting the parser's message when it is not JSON, or not an object.
nlohmann::json parse_json_body(const std::string& text);

}  // namespace dendro::serve
