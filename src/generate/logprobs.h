// Log-probabilities of tokens under a model's raw logits (no temperature, penalty or truncation), for
// comparing engines token by token: the log-softmax is computed in double with the log-sum-exp shift.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace dendro {

struct TokenLogprob {
    int32_t id = -1;
    double logprob = 0.0;  // -infinity for a token the logits rule out (a -inf or NaN logit)
};

struct PositionLogprobs {
    TokenLogprob chosen;            // the token that came next
    std::vector<TokenLogprob> top;  // the n_top most likely tokens, most likely first, ties by lower id
};

// log_softmax(logits)[token] and the n_top best alternatives. Throws dendro::Error for a token outside the
// vocabulary or a negative n_top; n_top beyond the vocabulary size gives the whole vocabulary.
PositionLogprobs position_logprobs(std::span<const float> logits, int32_t token, int32_t n_top);

// Prefills `tokens` into sequence `seq` (continuing from its state) with every position's logits, a chunk at
// a time so that memory stays bounded, and calls on_token(pos, logprobs) for each token after the first:
// its log-probability given the tokens before it. Leaves the last position's logits in last_logits
// (n_vocab floats), as a plain prefill does.
using PromptTokenLogprobs = std::function<void(size_t pos, const PositionLogprobs& logprobs)>;
void prefill_with_logprobs(Backend& backend, int seq, std::span<const int32_t> tokens, int32_t n_top,
                           std::span<float> last_logits, const PromptTokenLogprobs& on_token);

}  // namespace dendro
