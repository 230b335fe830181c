// Activation quantization (see quantized_activations.h), in chunks of 32 through simd.h.
#include "cpu/quantized_activations.h"

#include "cpu/simd.h"

namespace dendro::cpu {
namespace {

constexpr int64_t kChunk = kLegacyQuantBlockSize;
constexpr int kChunkVectors = static_cast<int>(kChunk / kLanes);

// max |x|, or NaN if some x is not finite (x * 0 is NaN just for those), so that a NaN or infinite input
// makes the products NaN, as it does with fp32 inputs, rather than rounding to some finite q.
float abs_max(const float* x, int64_t n) {
    F32x8 m = zero8(), non_finite = zero8();
    for (int64_t i = 0; i < n; i += kLanes) {
        const F32x8 v = load8(x + i);
        m = max8(m, abs8(v));
        non_finite = fma8(v, zero8(), non_finite);  // v * 0 is NaN for NaN and infinite v only
    }
    return hmax8(m) + hsum8(non_finite);
}

// q = x / d rounded for n (a multiple of 32) values; returns d.
float quantize_block(const float* x, int64_t n, int8_t* q) {
    const float d = abs_max(x, n) / kActivationMax;
    const F32x8 inverse = broadcast8(d != 0.0f ? 1.0f / d : 0.0f);
    for (int64_t i = 0; i < n; i += kChunk) {
        F32x8 scaled[kChunkVectors];
        for (int j = 0; j < kChunkVectors; ++j) scaled[j] = mul8(load8(x + i + j * kLanes), inverse);
        round32_i8(scaled, q + i);
    }
    return d;
}

int sum_of(const int8_t* q, int64_t n) {
    int sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += q[i];
    return sum;
}

}  // namespace

void quantize_activations(const float* x, int64_t n, ActivationBlock32* out) {
    for (int64_t b = 0; b < n / kLegacyQuantBlockSize; ++b) {
        ActivationBlock32& block = out[b];
        block.d = quantize_block(x + b * kLegacyQuantBlockSize, kLegacyQuantBlockSize, block.q);
        block.sum = sum_of(block.q, kLegacyQuantBlockSize);
        block.scaled_sum = block.d * static_cast<float>(block.sum);
    }
}

void quantize_activations(const float* x, int64_t n, ActivationBlock256* out) {
    for (int64_t b = 0; b < n / kKQuantBlockSize; ++b) {
        ActivationBlock256& block = out[b];
        block.d = quantize_block(x + b * kKQuantBlockSize, kKQuantBlockSize, block.q);
        for (int64_t s = 0; s < kKQuantBlockSize / kSubBlockSize; ++s) {
            block.sums[s] = static_cast<int16_t>(sum_of(block.q + s * kSubBlockSize, kSubBlockSize));
        }
        for (int64_t s = 0; s < kKQuantBlockSize / kLegacyQuantBlockSize; ++s) {
            block.sums32[s] = static_cast<int16_t>(block.sums[2 * s] + block.sums[2 * s + 1]);
        }
    }
}

}  // namespace dendro::cpu
