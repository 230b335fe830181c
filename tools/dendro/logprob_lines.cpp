#include "logprob_lines.h"

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode_utf8.h"

namespace dendro::cli {
namespace {

// "text" (always valid UTF-8, which JSON needs), plus "bytes" when the token's bytes are not valid UTF-8.
void put_token_text(nlohmann::ordered_json& out, const Tokenizer& tokenizer, int32_t id) {
    const std::string bytes = tokenizer.token_bytes(id);
    const std::string text = utf8::replace_invalid(bytes);
    out["text"] = text;
    if (text != bytes) out["bytes"] = std::vector<uint8_t>(bytes.begin(), bytes.end());
}

nlohmann::ordered_json token_object(const Tokenizer& tokenizer, const TokenLogprob& token) {
    nlohmann::ordered_json out;
    out["id"] = token.id;
    put_token_text(out, tokenizer, token.id);
    out["logprob"] = token.logprob;  // -infinity is written as null
    return out;
}

}  // namespace

void print_logprob_line(const Tokenizer& tokenizer, size_t pos, int32_t id, const PositionLogprobs* logprobs,
                        std::string_view source) {
    nlohmann::ordered_json line;
    line["pos"] = pos;
    line["id"] = id;
    put_token_text(line, tokenizer, id);
    line["logprob"] = nullptr;
    line["top"] = nullptr;
    if (logprobs) {
        line["logprob"] = logprobs->chosen.logprob;
        nlohmann::ordered_json top = nlohmann::ordered_json::array();
        for (const TokenLogprob& alternative : logprobs->top) top.push_back(token_object(tokenizer, alternative));
        line["top"] = std::move(top);
    }
    line["source"] = source;
    const std::string text = line.dump() + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

}  // namespace dendro::cli
