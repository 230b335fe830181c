#include "generate/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/checked_int.h"
#include "common/error.h"

namespace dendro {
namespace {

// Positions per all-logits prefill call: 64 rows of even a 256k vocabulary stay at 64 MiB.
constexpr size_t kPrefillChunkTokens = 64;

constexpr double kMinusInfinity = -std::numeric_limits<double>::infinity();

// A NaN logit counts as impossible, as it does for the sampler.
double logit_value(float logit) { return std::isnan(logit) ? kMinusInfinity : static_cast<double>(logit); }

// log(sum(exp(logits))), shifted by the largest logit so that no term overflows.
double log_sum_exp(std::span<const float> logits) {
    double max_logit = kMinusInfinity;
    for (const float logit : logits) max_logit = std::max(max_logit, logit_value(logit));
    if (!std::isfinite(max_logit)) return max_logit;  // all impossible (-inf), or an infinite logit
    double sum = 0.0;
    for (const float logit : logits) sum += std::exp(logit_value(logit) - max_logit);
    return max_logit + std::log(sum);
}

}  // namespace

PositionLogprobs position_logprobs(std::span<const float> logits, int32_t token, int32_t n_top) {
    if (!is_index_below(token, logits.size())) {
        fail("logprobs: token ", token, " is outside the vocabulary of ", logits.size());
    }
    if (n_top < 0) fail("logprobs: the number of alternatives must be >= 0, got ", n_top);
    const double normalizer = log_sum_exp(logits);
    const auto logprob = [&](int32_t id) { return logit_value(logits[static_cast<size_t>(id)]) - normalizer; };

    PositionLogprobs out;
    out.chosen = {token, logprob(token)};
    const size_t n = std::min(static_cast<size_t>(n_top), logits.size());
    std::vector<int32_t> ids(logits.size());
    for (size_t id = 0; id < ids.size(); ++id) ids[id] = static_cast<int32_t>(id);
    const auto more_likely = [&](int32_t a, int32_t b) {
        const double la = logit_value(logits[static_cast<size_t>(a)]), lb = logit_value(logits[static_cast<size_t>(b)]);
        return la != lb ? la > lb : a < b;
    };
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(), more_likely);
    out.top.reserve(n);
    for (size_t k = 0; k < n; ++k) out.top.push_back({ids[k], logprob(ids[k])});
    return out;
}

void prefill_with_logprobs(Backend& backend, int seq, std::span<const int32_t> tokens, int32_t n_top,
                           std::span<float> last_logits, const PromptTokenLogprobs& on_token) {
    const size_t n_vocab = static_cast<size_t>(backend.hparams().n_vocab);
    if (last_logits.size() != n_vocab) fail("prefill_with_logprobs: expected ", n_vocab, " logits, got ", last_logits.size());
    if (tokens.empty()) fail("prefill_with_logprobs: no tokens");
    std::vector<float> rows(std::min(tokens.size(), kPrefillChunkTokens) * n_vocab);
    for (size_t begin = 0; begin < tokens.size(); begin += kPrefillChunkTokens) {
        const size_t count = std::min(kPrefillChunkTokens, tokens.size() - begin);
        const std::span<float> chunk_rows(rows.data(), count * n_vocab);
        backend.prefill(seq, tokens.subspan(begin, count), chunk_rows, /*all_logits=*/true);
        // Row k predicts token begin + k + 1; the previous chunk's last row (in last_logits) predicts `begin`.
        if (begin > 0) on_token(begin, position_logprobs(last_logits, tokens[begin], n_top));
        for (size_t k = 0; k + 1 < count; ++k) {
            on_token(begin + k + 1,
                     position_logprobs(chunk_rows.subspan(k * n_vocab, n_vocab), tokens[begin + k + 1], n_top));
        }
        std::copy_n(chunk_rows.begin() + static_cast<std::ptrdiff_t>((count - 1) * n_vocab), n_vocab, last_logits.begin());
    }
}

}  // namespace dendro
