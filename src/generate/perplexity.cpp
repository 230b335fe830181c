#include "generate/perplexity.h"

#include <algorithm>
#include <cmath>

#include "cpu/topology.h"
#include "common/error.h"
#include "cpu/thread_pool.h"

namespace dendro {
namespace {

// -log softmax(logits)[target], with llama.cpp's precision: float max and exponentials, double sum.
double negative_log_likelihood(std::span<const float> logits, int32_t target) {
    const float max_logit = *std::max_element(logits.begin(), logits.end());
    double sum_exp = 0.0;
    for (const float logit : logits) sum_exp += std::exp(logit - max_logit);
    return static_cast<double>(max_logit) + std::log(sum_exp) - static_cast<double>(logits[target]);
}

}  // namespace

void check_perplexity_input(size_t n_tokens, const PerplexityOptions& options) {
    const int64_t n_ctx = options.n_ctx;
    if (n_ctx < kMinPerplexityCtx) fail("perplexity context must be at least ", kMinPerplexityCtx, " tokens, got ", n_ctx);
    if (static_cast<int64_t>(n_tokens) < 2 * n_ctx) {
        fail("perplexity with a context of ", n_ctx, " needs at least ", 2 * n_ctx, " tokens; the text has ",
             n_tokens);
    }
}

PerplexityResult compute_perplexity(Backend& backend, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options, const PerplexityProgress& progress) {
    check_perplexity_input(tokens.size(), options);
    const int64_t n_ctx = options.n_ctx;
    const int64_t n_vocab = backend.hparams().n_vocab;
    for (const int32_t token : tokens) {
        if (token < 0 || token >= n_vocab) fail("token id ", token, " is outside the vocabulary of ", n_vocab);
    }
    if (options.bos >= n_vocab) fail("BOS id ", options.bos, " is outside the vocabulary of ", n_vocab);

    int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
    if (options.max_chunks >= 0) n_chunks = std::min<int64_t>(n_chunks, options.max_chunks);

    // Positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1. The first half is prefilled without
    // logits; the chunk's last token is never an input whose prediction is scored, so it is not evaluated.
    const int64_t first = n_ctx / 2;
    const int64_t n_scored_per_chunk = n_ctx - 1 - first;
    std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
    std::vector<float> last_logits(static_cast<size_t>(n_vocab));
    std::vector<float> logits(static_cast<size_t>(n_scored_per_chunk * n_vocab));
    std::vector<double> token_nll(static_cast<size_t>(n_scored_per_chunk));

    ThreadPool scoring_pool(options.n_threads > 0 ? options.n_threads : default_thread_count());
    PerplexityResult result;
    double nll_sum = 0.0, nll2_sum = 0.0;
    const int seq = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
        std::copy_n(tokens.begin() + c * n_ctx, n_ctx, chunk.begin());
        if (options.bos >= 0) chunk[0] = options.bos;
        backend.reset(seq);
        const std::span<const int32_t> chunk_span(chunk);
        backend.prefill(seq, chunk_span.first(static_cast<size_t>(first)), last_logits, /*all_logits=*/false);
        backend.prefill(seq, chunk_span.subspan(static_cast<size_t>(first), static_cast<size_t>(n_scored_per_chunk)),
                        logits, /*all_logits=*/true);

        scoring_pool.run([&](int thread, int n_threads) {
            for (int64_t i = thread; i < n_scored_per_chunk; i += n_threads) {
                const std::span<const float> row(logits.data() + i * n_vocab, static_cast<size_t>(n_vocab));
                token_nll[static_cast<size_t>(i)] = negative_log_likelihood(row, chunk[first + 1 + i]);
            }
        });
        // Summed in order so that the result does not depend on the thread count.
        for (const double v : token_nll) {
            nll_sum += v;
            nll2_sum += v * v;
        }
        result.n_scored += n_scored_per_chunk;
        result.running_ppl.push_back(std::exp(nll_sum / static_cast<double>(result.n_scored)));
        ++result.n_chunks;
        if (progress) progress(static_cast<int32_t>(c), result.running_ppl.back());
    }

    const double count = static_cast<double>(result.n_scored);
    const double mean = nll_sum / count;
    const double variance = nll2_sum / count - mean * mean;
    result.ppl = std::exp(mean);
    result.ppl_uncertainty = variance > 0 && count > 1 ? result.ppl * std::sqrt(variance / (count - 1)) : 0.0;
    return result;
}

}  // namespace dendro
