// The decode loop of text generation: from the logits after a prompt, sample a token, stream its text,
// feed it back, until end-of-generation or the token budget. Prompt prefill (plain or through the prefix
// cache) is the caller's, so this loop is the same whichever way the prompt's state was reached.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "generate/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dendro {

struct GenerationResult {
    std::vector<int32_t> tokens;  // generated ids, the end-of-generation token excluded
    bool stopped_at_eog = false;
    int64_t decode_steps = 0;     // backend decode calls (the last sampled token is never fed back)
    double decode_seconds = 0.0;  // wall time spent in those calls and sampling
    double first_token_seconds = 0.0;  // wall time to pick the first token from the prompt's logits
};

// Sees each sampled token with the raw logits it was drawn from (before the repetition penalty and every
// other sampling transform), the end-of-generation token included.
using TokenObserver = std::function<void(int32_t token, std::span<const float> logits)>;

// `logits` are the last position's logits of sequence `seq` (n_vocab floats); `history` the tokens already
// in the sequence (the prompt): seen by the repetition penalty, and the text the streamed text continues.
// `on_text` receives text pieces as soon as they are complete UTF-8; they add up to
// decode(history + generated) minus decode(history). stop_at_eog=false keeps sampling past the
// end-of-generation token (benchmarks). An `on_token` observer keeps sampling on the host, where the logits are.
GenerationResult generate(Backend& backend, const Tokenizer& tokenizer, int seq, std::span<const float> logits,
                          std::span<const int32_t> history, const SamplingParams& params, int32_t max_new_tokens,
                          const std::function<void(std::string_view)>& on_text, bool stop_at_eog = true,
                          const TokenObserver& on_token = {});

}  // namespace dendro
