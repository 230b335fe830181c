// The JSON of OpenAI's responses: a whole completion / chat completion, the chunks of a stream (sent as
// server-sent events "data: {...}\n\n", ended by "data: [DONE]\n\n"), and logprobs in each endpoint's shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/job.h"
#include "serve/request.h"
#include "tokenizer/tokenizer.h"

namespace dendro::serve {

// What every chunk and response of one request carries.
struct ResponseIdentity {
    Endpoint endpoint = Endpoint::Completions;
    std::string id;       // "cmpl-..." / "chatcmpl-..."
    int64_t created = 0;  // Unix seconds
    std::string model;
};

nlohmann::json usage_json(const JobUsage& usage);

// The response of a non-streamed request: every piece's text and logprobs, the finish reason, the usage.
nlohmann::json full_response(const ResponseIdentity& who, const Tokenizer& tokenizer,
                             const std::vector<GeneratedPiece>& pieces, bool logprobs, FinishReason reason,
                             const JobUsage& usage);

// One streamed chunk with some pieces (the first chat chunk also carries the assistant role).
nlohmann::json stream_chunk(const ResponseIdentity& who, const Tokenizer& tokenizer,
                            const std::vector<GeneratedPiece>& pieces, bool logprobs, bool first);
// The chunk that ends a stream's choice with its finish reason.
nlohmann::json final_chunk(const ResponseIdentity& who, FinishReason reason);
// The chunk after the final one when the client asked for stream_options.include_usage.
nlohmann::json usage_chunk(const ResponseIdentity& who, const JobUsage& usage);

// "data: <json>\n\n"; invalid UTF-8 in token texts is replaced by U+FFFD.
std::string sse_event(const nlohmann::json& chunk);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";
// A JSON body, invalid UTF-8 replaced by U+FFFD.
std::string json_text(const nlohmann::json& value);

}  // namespace dendro::serve
