// Token sampling from logits: greedy, temperature, top-k, top-p, min-p and a repetition penalty over a
// window of recent tokens, with a seeded RNG so that the same seed gives the same text.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace dendro {

struct SamplingParams {
    float temperature = 0.8f;    // 0 = greedy
    int32_t top_k = 40;          // 0 = off
    float top_p = 0.95f;         // 1 = off
    float min_p = 0.05f;         // 0 = off
    float repeat_penalty = 1.0f; // 1 = off (the default, so that temperature 0 is plain argmax)
    int32_t repeat_last_n = 64;  // window for the penalty
    uint64_t seed = 0;

    // Throws dendro::Error naming the parameter when a value is out of range.
    void validate() const;
};

class Sampler {
public:
    Sampler(const SamplingParams& params, int32_t n_vocab);
    // Picks the next token; does not record it (call accept).
    int32_t sample(std::span<const float> logits);
    void accept(int32_t token);  // records a token (prompt or generated) for the repetition penalty
    void reset();

private:
    SamplingParams params_;
    int32_t n_vocab_;
    std::mt19937_64 rng_;
    std::deque<int32_t> recent_;
    // Scratch kept between calls, so that sampling a token allocates nothing once warm.
    std::vector<std::pair<float, int32_t>> candidates_;
    std::vector<double> probs_;
    std::vector<int32_t> distinct_recent_;
};

}  // namespace dendro
