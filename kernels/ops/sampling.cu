// Sampling without sorting the vocabulary: the top-k bound is found by a radix select over order-preserving
// 32-bit keys of the logits (four 8-bit histogram passes), the top-p bound by deciding the bits of a key
// threshold from the top down (keep a bit when the mass at or above the raised threshold still reaches
// top_p), and the draw by a block-wide prefix sum over the kept tokens' weights in vocabulary order. Each pass
// is a sweep of the row from L2/L1; a row of 50k logits costs tens of microseconds at most.
#include "ops/sampling.h"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "runtime/cuda_check.h"
#include "ops/sampled_tokens.h"

namespace dendro::cuda {
namespace {

constexpr int kSampleThreads = 1024;
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;
constexpr int kKeyBits = 32;

// Larger float <=> larger unsigned key.
__device__ __forceinline__ uint32_t order_key(float value) {
    const uint32_t bits = __float_as_uint(value);
    return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Uniform in [0, 1) from the top 24 bits.
__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t counter) {
    constexpr float kInv2Pow24 = 1.0f / 16777216.0f;
    return static_cast<float>(splitmix64(seed ^ splitmix64(counter)) >> 40) * kInv2Pow24;
}

// A NaN logit counts as -inf: never chosen, no weight (a NaN would otherwise win comparisons arbitrarily and
// poison every sum of the row).
__device__ __forceinline__ float logit_at(const float* logits, int64_t i) {
    const float l = logits[i];
    return isnan(l) ? -INFINITY : l;
}

struct ArgMax {
    float value;
    int64_t index;
};

__device__ __forceinline__ ArgMax better(const ArgMax& a, const ArgMax& b) {
    if (a.value != b.value) return a.value > b.value ? a : b;
    return a.index < b.index ? a : b;
}

__global__ void __launch_bounds__(kSampleThreads)
    sample_tokens_kernel(const float* __restrict__ all_logits, int64_t n_vocab, const SamplingConfig* config_ptr,
                         uint64_t* counters, const int32_t* slots, int32_t* out_tokens) {
    using FloatReduce = cub::BlockReduce<float, kSampleThreads>;
    using ArgMaxReduce = cub::BlockReduce<ArgMax, kSampleThreads>;
    using FloatScan = cub::BlockScan<float, kSampleThreads>;
    __shared__ union {
        typename FloatReduce::TempStorage reduce;
        typename ArgMaxReduce::TempStorage argmax;
        typename FloatScan::TempStorage scan;
    } storage;
    __shared__ uint32_t histogram[kRadixBins];
    __shared__ uint32_t shared_key;
    __shared__ int64_t shared_remaining;
    __shared__ float shared_value;
    __shared__ int64_t shared_token;

    const int row = blockIdx.x;
    const float* logits = all_logits + row * n_vocab;
    const SamplingConfig config = *config_ptr;
    const int tid = threadIdx.x;

    ArgMax best{-INFINITY, n_vocab};
    for (int64_t i = tid; i < n_vocab; i += kSampleThreads) best = better(best, ArgMax{logit_at(logits, i), i});
    best = ArgMaxReduce(storage.argmax).Reduce(best, better);
    if (tid == 0) {
        shared_value = best.value;
        shared_token = best.index;
    }
    __syncthreads();
    const float max_logit = shared_value;
    const int64_t argmax_token = shared_token;
    // No logit above -inf (all NaN or -inf): no distribution to sample; the host reports it.
    if (!(max_logit > -INFINITY)) {
        if (tid == 0) out_tokens[row] = kNoSampledToken;
        return;
    }
    // Greedy; and a +inf logit takes all the probability (exp(inf - inf) would be NaN).
    if (config.temperature <= 0.0f || max_logit == INFINITY) {
        if (tid == 0) out_tokens[row] = static_cast<int32_t>(argmax_token);
        return;
    }

    // Top-k: the k-th largest key, decided 8 bits at a time from the top.
    uint32_t threshold = 0;
    if (config.top_k > 0 && config.top_k < n_vocab) {
        uint32_t prefix = 0, prefix_mask = 0;
        int64_t remaining = config.top_k;
        for (int shift = kKeyBits - kRadixBits; shift >= 0; shift -= kRadixBits) {
            for (int i = tid; i < kRadixBins; i += kSampleThreads) histogram[i] = 0;
            __syncthreads();
            for (int64_t i = tid; i < n_vocab; i += kSampleThreads) {
                const uint32_t key = order_key(logit_at(logits, i));
                if ((key & prefix_mask) == prefix) atomicAdd(&histogram[(key >> shift) & (kRadixBins - 1)], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                int64_t above = 0;
                int digit = kRadixBins - 1;
                for (; digit > 0; --digit) {
                    if (above + histogram[digit] >= remaining) break;
                    above += histogram[digit];
                }
                shared_key = static_cast<uint32_t>(digit);
                shared_remaining = remaining - above;
            }
            __syncthreads();
            prefix |= shared_key << shift;
            prefix_mask |= static_cast<uint32_t>(kRadixBins - 1) << shift;
            remaining = shared_remaining;
            __syncthreads();
        }
        threshold = prefix;
    }

    const float inv_temperature = 1.0f / config.temperature;
    auto mass_at_or_above = [&](uint32_t bound) {
        float sum = 0.0f;
        for (int64_t i = tid; i < n_vocab; i += kSampleThreads) {
            const float l = logit_at(logits, i);
            if (order_key(l) >= bound) sum += expf((l - max_logit) * inv_temperature);
        }
        const float total = FloatReduce(storage.reduce).Sum(sum);
        if (tid == 0) shared_value = total;
        __syncthreads();
        const float result = shared_value;
        __syncthreads();
        return result;
    };

    // Top-p: the largest key bound whose mass still reaches top_p of the top-k mass.
    if (config.top_p < 1.0f) {
        const float target = config.top_p * mass_at_or_above(threshold);
        uint32_t bound = threshold;
        for (int bit = kKeyBits - 1; bit >= 0; --bit) {
            const uint32_t raised = bound | (1u << bit);
            if (raised > bound && mass_at_or_above(raised) >= target) bound = raised;
        }
        threshold = bound;
    }

    // Draw: each thread owns a contiguous slice so that an exclusive scan of slice sums orders the kept
    // tokens by id.
    const int64_t slice = (n_vocab + kSampleThreads - 1) / kSampleThreads;
    const int64_t begin = min(static_cast<int64_t>(tid) * slice, n_vocab);
    const int64_t end = min(begin + slice, n_vocab);
    float slice_sum = 0.0f;
    for (int64_t i = begin; i < end; ++i) {
        const float l = logit_at(logits, i);
        if (order_key(l) >= threshold) slice_sum += expf((l - max_logit) * inv_temperature);
    }
    float before = 0.0f, total = 0.0f;
    FloatScan(storage.scan).ExclusiveSum(slice_sum, before, total);
    const int counter_index = slots != nullptr ? slots[row] : row;
    const float target = uniform01(config.seed, counters[counter_index]) * total;
    if (tid == 0) shared_token = argmax_token;  // rounding can leave the target past every slice
    __syncthreads();
    if (slice_sum > 0.0f && target >= before && target < before + slice_sum) {
        float running = before;
        int64_t chosen = -1;
        for (int64_t i = begin; i < end && chosen < 0; ++i) {
            const float l = logit_at(logits, i);
            if (order_key(l) < threshold) continue;
            running += expf((l - max_logit) * inv_temperature);
            if (target < running) chosen = i;
        }
        if (chosen >= 0) shared_token = chosen;
    }
    __syncthreads();
    if (tid == 0) {
        out_tokens[row] = static_cast<int32_t>(shared_token);
        counters[counter_index] += 1;
    }
}

}  // namespace

void launch_sample_tokens(const float* logits, int64_t n_vocab, int n_rows, const SamplingConfig* config,
                          uint64_t* counters, const int32_t* slots, int32_t* out_tokens, cudaStream_t stream) {
    if (n_rows == 0) return;
    sample_tokens_kernel<<<static_cast<unsigned>(n_rows), kSampleThreads, 0, stream>>>(logits, n_vocab, config,
                                                                                       counters, slots, out_tokens);
    check_launch("sample_tokens_kernel");
}

}  // namespace dendro::cuda
