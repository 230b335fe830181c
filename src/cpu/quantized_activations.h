// Token vectors quantized to 8 bits for the integer matmul of quantized weights (quant_rows.h): each block
// of 32 (for Q8_0, the legacy quants and IQ4_NL) or 256 (for the k-quants) elements becomes int8 values q
// and one fp32 scale d = max|x| / 127, x ~= d * q with q = x / d rounded to nearest (ties to even). The
// function of one token's values alone, so every tile, batch and thread sees the same activations.
#pragma once

#include <cstdint>

#include "format/ggml_quant_blocks.h"

namespace dendro::cpu {

inline constexpr int kActivationMax = 127;  // |q| <= 127, so that no pair of products saturates int16
inline constexpr int64_t kSubBlockSize = 16;

// For the types with blocks of 32. sum = sum(q), for the weight offsets taken off in integers, and
// scaled_sum = d * sum, for Q4_1 and Q5_1, whose offset m multiplies it.
struct ActivationBlock32 {
    float d;
    float scaled_sum;
    int32_t sum;
    int8_t q[kLegacyQuantBlockSize];
};

// For the k-quants: sums[i] = sum of q over sub-block i of 16, for their mins and offsets, and sums32[i] =
// sums[2i] + sums[2i + 1], over sub-block i of 32, for Q4_K's and Q5_K's mins (summed once per token, not
// once per row tile).
struct ActivationBlock256 {
    float d;
    int16_t sums[kKQuantBlockSize / kSubBlockSize];
    int16_t sums32[kKQuantBlockSize / kLegacyQuantBlockSize];
    int8_t q[kKQuantBlockSize];
};

// n must be a whole number of blocks; out receives n / block size blocks.
void quantize_activations(const float* x, int64_t n, ActivationBlock32* out);
void quantize_activations(const float* x, int64_t n, ActivationBlock256* out);

}  // namespace dendro::cpu
