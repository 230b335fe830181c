// Next-token choice on the device, one block per row of logits, so a decode step sends only token ids to the
// host. Greedy (temperature 0: the first index of the largest logit), else softmax at the temperature restricted
// to the top-k logits (0 = all) and then to the smallest set of most likely tokens whose probability reaches
// top_p (1 = all), sampled with a counter-based RNG: (seed, per-row counter) -> uniform, counter += 1.
// Tokens tied with the k-th largest logit or the nucleus boundary are all kept. A NaN logit counts as -inf; a
// row with no logit above -inf gets kNoSampledToken (sampled_tokens.h), which the backend reports as an error.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dendro::cuda {

struct SamplingConfig {
    float temperature = 0.0f;
    int32_t top_k = 0;
    float top_p = 1.0f;
    uint64_t seed = 0;
};

// logits: n_rows x n_vocab (device); config: device pointer; counters: device, the counter of row r is
// counters[slots ? slots[r] : r]; out_tokens: n_rows device int32.
void launch_sample_tokens(const float* logits, int64_t n_vocab, int n_rows, const SamplingConfig* config,
                          uint64_t* counters, const int32_t* slots, int32_t* out_tokens, cudaStream_t stream);

}  // namespace dendro::cuda
