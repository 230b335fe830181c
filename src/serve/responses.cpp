#include "serve/responses.h"

#include <cmath>

namespace dendro::serve {
namespace {

using nlohmann::json;

// -infinity has no JSON number: OpenAI clients get the most negative double instead.
double json_logprob(double logprob) { return std::isfinite(logprob) ? logprob : -1e300; }

json byte_list(const std::string& text) {
    json bytes = json::array();
    for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
    return bytes;
}

bool is_chat(const ResponseIdentity& who) { return who.endpoint == Endpoint::ChatCompletions; }

// Completions: {"tokens", "token_logprobs", "top_logprobs": [{text: logprob}], "text_offset"}.
json completion_logprobs(const Tokenizer& tokenizer, const std::vector<GeneratedPiece>& pieces, size_t text_offset) {
    json out = {{"tokens", json::array()},
                {"token_logprobs", json::array()},
                {"top_logprobs", json::array()},
                {"text_offset", json::array()}};
    for (const GeneratedPiece& p : pieces) {
        if (p.token >= 0 && p.logprobs) {
            out["tokens"].push_back(tokenizer.token_bytes(p.token));
            out["token_logprobs"].push_back(json_logprob(p.logprobs->chosen.logprob));
            json top = json::object();
            for (const TokenLogprob& t : p.logprobs->top) top[tokenizer.token_bytes(t.id)] = json_logprob(t.logprob);
            out["top_logprobs"].push_back(top);
            out["text_offset"].push_back(text_offset);
        }
        text_offset += p.text.size();
    }
    return out;
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}.
json chat_logprobs(const Tokenizer& tokenizer, const std::vector<GeneratedPiece>& pieces) {
    json content = json::array();
    for (const GeneratedPiece& p : pieces) {
        if (p.token < 0 || !p.logprobs) continue;
        const std::string text = tokenizer.token_bytes(p.token);
        json top = json::array();
        for (const TokenLogprob& t : p.logprobs->top) {
            const std::string alt = tokenizer.token_bytes(t.id);
            top.push_back({{"token", alt}, {"logprob", json_logprob(t.logprob)}, {"bytes", byte_list(alt)}});
        }
        content.push_back({{"token", text},
                           {"logprob", json_logprob(p.logprobs->chosen.logprob)},
                           {"bytes", byte_list(text)},
                           {"top_logprobs", top}});
    }
    return {{"content", content}};
}

json logprobs_json(const ResponseIdentity& who, const Tokenizer& tokenizer, const std::vector<GeneratedPiece>& pieces,
                   bool logprobs) {
    if (!logprobs) return nullptr;
    return is_chat(who) ? chat_logprobs(tokenizer, pieces) : completion_logprobs(tokenizer, pieces, 0);
}

std::string joined_text(const std::vector<GeneratedPiece>& pieces) {
    std::string text;
    for (const GeneratedPiece& p : pieces) text += p.text;
    return text;
}

json envelope(const ResponseIdentity& who, bool chunk) {
    const char* object = is_chat(who) ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    return {{"id", who.id}, {"object", object}, {"created", who.created}, {"model", who.model}};
}

}  // namespace

json usage_json(const JobUsage& usage) {
    return {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

json full_response(const ResponseIdentity& who, const Tokenizer& tokenizer, const std::vector<GeneratedPiece>& pieces,
                   bool logprobs, FinishReason reason, const JobUsage& usage) {
    json choice = {{"index", 0},
                   {"finish_reason", finish_reason_name(reason)},
                   {"logprobs", logprobs_json(who, tokenizer, pieces, logprobs)}};
    if (is_chat(who)) {
        choice["message"] = {{"role", "assistant"}, {"content", joined_text(pieces)}};
    } else {
        choice["text"] = joined_text(pieces);
    }
    json out = envelope(who, false);
    out["choices"] = json::array({choice});
    out["usage"] = usage_json(usage);
    return out;
}

json stream_chunk(const ResponseIdentity& who, const Tokenizer& tokenizer, const std::vector<GeneratedPiece>& pieces,
                  bool logprobs, bool first) {
    json choice = {
        {"index", 0}, {"finish_reason", nullptr}, {"logprobs", logprobs_json(who, tokenizer, pieces, logprobs)}};
    if (is_chat(who)) {
        json delta = {{"content", joined_text(pieces)}};
        if (first) delta["role"] = "assistant";
        choice["delta"] = delta;
    } else {
        choice["text"] = joined_text(pieces);
    }
    json out = envelope(who, true);
    out["choices"] = json::array({choice});
    return out;
}

json final_chunk(const ResponseIdentity& who, FinishReason reason) {
    json choice = {{"index", 0}, {"finish_reason", finish_reason_name(reason)}, {"logprobs", nullptr}};
    if (is_chat(who)) {
        choice["delta"] = json::object();
    } else {
        choice["text"] = "";
    }
    json out = envelope(who, true);
    out["choices"] = json::array({choice});
    return out;
}

json usage_chunk(const ResponseIdentity& who, const JobUsage& usage) {
    json out = envelope(who, true);
    out["choices"] = json::array();
    out["usage"] = usage_json(usage);
    return out;
}

std::string json_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& chunk) { return "data: " + json_text(chunk) + "\n\n"; }

}  // namespace dendro::serve
