// Token sampling: repetition penalty, then top-k, temperature, top-p and min-p, then a seeded draw.
#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace dendro {
namespace {

// Higher logit first; equal logits by lower token id, so that every step is deterministic.
bool before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
}

// A uniform double in [0, 1) from the top 53 bits of one draw: the same on every standard library.
constexpr int kDoubleMantissaBits = 53;
double uniform01(std::mt19937_64& rng) {
    return static_cast<double>(rng() >> (64 - kDoubleMantissaBits)) * std::ldexp(1.0, -kDoubleMantissaBits);
}

}  // namespace

void SamplingParams::validate() const {
    if (!(temperature >= 0.0f) || !std::isfinite(temperature)) fail("--temp must be >= 0, got ", temperature);
    if (top_k < 0) fail("--top-k must be >= 0, got ", top_k);
    if (!(top_p > 0.0f && top_p <= 1.0f)) fail("--top-p must be in (0, 1], got ", top_p);
    if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("--min-p must be in [0, 1], got ", min_p);
    if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) {
        fail("--repeat-penalty must be > 0, got ", repeat_penalty);
    }
    if (repeat_last_n < 0) fail("--repeat-last-n must be >= 0, got ", repeat_last_n);
}

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab)
    : params_(params), n_vocab_(n_vocab), rng_(params.seed) {
    params_.validate();
    if (n_vocab <= 0) fail("sampler: vocabulary size must be positive, got ", n_vocab);
}

void Sampler::accept(int32_t token) {
    if (params_.repeat_last_n == 0) return;
    recent_.push_back(token);
    while (recent_.size() > static_cast<size_t>(params_.repeat_last_n)) recent_.pop_front();
}

void Sampler::reset() {
    recent_.clear();
    rng_.seed(params_.seed);
}

int32_t Sampler::sample(std::span<const float> logits) {
    if (logits.size() != static_cast<size_t>(n_vocab_)) {
        fail("sampler: ", logits.size(), " logits for a vocabulary of ", n_vocab_);
    }
    // A NaN logit would break the ordering that sorting relies on: it counts as impossible.
    candidates_.resize(logits.size());
    for (int32_t id = 0; id < n_vocab_; ++id) {
        candidates_[id] = {std::isnan(logits[id]) ? -std::numeric_limits<float>::infinity() : logits[id], id};
    }

    // llama.cpp's penalty: once per distinct recent token, dividing positive logits and multiplying others.
    if (params_.repeat_penalty != 1.0f) {
        distinct_recent_.assign(recent_.begin(), recent_.end());
        std::sort(distinct_recent_.begin(), distinct_recent_.end());
        distinct_recent_.erase(std::unique(distinct_recent_.begin(), distinct_recent_.end()), distinct_recent_.end());
        for (int32_t id : distinct_recent_) {
            if (id < 0 || id >= n_vocab_) continue;
            float& logit = candidates_[id].first;
            logit = logit > 0.0f ? logit / params_.repeat_penalty : logit * params_.repeat_penalty;
        }
    }

    if (params_.temperature == 0.0f) {
        return std::min_element(candidates_.begin(), candidates_.end(), before)->second;
    }

    size_t n = candidates_.size();
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
        n = static_cast<size_t>(params_.top_k);
        std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.end(), before);
    } else {
        std::sort(candidates_.begin(), candidates_.end(), before);
    }

    // Softmax of logit / temperature over the kept candidates (sorted: the first is the largest).
    if (std::isinf(candidates_[0].first) && candidates_[0].first < 0) fail("sampler: no token has a finite logit");
    const float max_scaled = candidates_[0].first / params_.temperature;
    std::vector<double>& probs = probs_;
    probs.resize(n);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
        probs[i] = std::exp(static_cast<double>(candidates_[i].first / params_.temperature - max_scaled));
        total += probs[i];
    }
    for (double& p : probs) p /= total;

    // Top-p: the shortest prefix whose mass reaches top_p (at least one token).
    if (params_.top_p < 1.0f) {
        double mass = 0.0;
        size_t keep = 0;
        while (keep < n) {
            mass += probs[keep++];
            if (mass >= params_.top_p) break;
        }
        n = keep;
    }
    // Min-p: tokens at least min_p times as likely as the most likely one.
    if (params_.min_p > 0.0f) {
        const double threshold = params_.min_p * probs[0];
        size_t keep = 1;
        while (keep < n && probs[keep] >= threshold) ++keep;
        n = keep;
    }

    double kept_mass = 0.0;
    for (size_t i = 0; i < n; ++i) kept_mass += probs[i];
    double target = uniform01(rng_) * kept_mass;
    for (size_t i = 0; i < n; ++i) {
        target -= probs[i];
        if (target < 0.0) return candidates_[i].second;
    }
    return candidates_[n - 1].second;
}

}  // namespace dendro
