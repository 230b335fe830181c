// Perplexity of a model over a token sequence, computed the way llama.cpp's perplexity tool does so that
// the figures are comparable: the tokens are cut into chunks of n_ctx, each chunk is evaluated from an
// empty state with its first token replaced by BOS (when the vocabulary adds one), and only the second
// half of each chunk is scored (positions n_ctx/2 + 1 .. n_ctx - 1, each predicted from its prefix).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace dendro {

struct PerplexityOptions {
    int32_t n_ctx = 512;      // tokens per chunk
    int32_t max_chunks = -1;  // evaluate at most this many chunks; -1 = all
    int32_t bos = -1;         // token put at the start of every chunk; -1 = keep the text's token
    int n_threads = 0;        // threads for the log-softmax scoring; 0 = one per core
};

struct PerplexityResult {
    int32_t n_chunks = 0;
    int64_t n_scored = 0;                // tokens whose log-likelihood was summed
    double ppl = 0.0;                    // exp(mean negative log-likelihood)
    double ppl_uncertainty = 0.0;        // ppl * standard error of the mean NLL (llama.cpp's "+/-")
    std::vector<double> running_ppl;     // the estimate after each chunk
};

// Called after each chunk with its 0-based index and the running perplexity estimate.
using PerplexityProgress = std::function<void(int32_t chunk, double running_ppl)>;

// Throws dendro::Error when n_ctx is below kMinPerplexityCtx or there are fewer than 2 * n_ctx tokens
// (llama.cpp's requirement).
void check_perplexity_input(size_t n_tokens, const PerplexityOptions& options);

// Throws dendro::Error as check_perplexity_input does, or when a token id is outside the model's vocabulary.
PerplexityResult compute_perplexity(Backend& backend, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options, const PerplexityProgress& progress = {});

inline constexpr int32_t kMinPerplexityCtx = 4;

}  // namespace dendro
