// The JSON lines of `dendro run --logprobs N`: one object per token, prompt tokens first, on stdout.
//   {"pos": 3, "id": 281, "text": " art", "logprob": -2.41, "top": [{"id", "text", "logprob"}, ...],
//    "source": "prompt" | "generated"}
// pos counts from 0 over the whole sequence (BOS included); a sampled end-of-generation token has its line
// (source "generated") though it is not printed as text. The first prompt token has "logprob" and "top"
// null (nothing precedes it). Log-probabilities are those of the raw model logits (log-softmax in double),
// before any sampling setting; a token the logits rule out has "logprob" null. "text" is the token's bytes
// as they appear inside a decoded text; when those bytes are not valid UTF-8 on their own (a byte token,
// half a character) "text" has U+FFFD in their place and "bytes" lists them as numbers 0-255.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "generate/logprobs.h"
#include "tokenizer/tokenizer.h"

namespace dendro::cli {

inline constexpr std::string_view kPromptSource = "prompt";
inline constexpr std::string_view kGeneratedSource = "generated";

// Writes one line to stdout and flushes it; `logprobs` null for the first prompt token.
void print_logprob_line(const Tokenizer& tokenizer, size_t pos, int32_t id, const PositionLogprobs* logprobs,
                        std::string_view source);

}  // namespace dendro::cli
