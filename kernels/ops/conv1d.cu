// Conv1d kernels. Prefill gives each thread one channel and a tile of consecutive time steps: the window
// lives in registers (right-aligned in a kMaxConvWidth array so that every index is a compile-time constant)
// and each input is read once per tile, coalesced across the warp's channels. The window state is rewritten by
// a second kernel once every tile has read the old one.
#include "ops/conv1d.h"

#include "ops/conv_step.cuh"
#include "runtime/cuda_check.h"
#include "common/error.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kConvThreads = 128;
constexpr int kConvTimeTile = 64;

__global__ void __launch_bounds__(kConvThreads)
    conv1d_prefill_kernel(ConvWeights conv, const float* __restrict__ x, int64_t x_stride, int64_t n_tokens,
                          const float* __restrict__ window, float* __restrict__ out) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
    if (c >= conv.d_inner) return;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kConvTimeTile;
    const int64_t t_end = min(t0 + kConvTimeTile, n_tokens);
    const int64_t past = conv.d_conv - 1;

    // taps[j] multiplies the input j steps back; recent[kMaxConvWidth-1-j] holds that input.
    float taps[kMaxConvWidth];
    float recent[kMaxConvWidth];
#pragma unroll
    for (int j = 0; j < kMaxConvWidth; ++j) {
        taps[j] = j < conv.d_conv ? conv.weight[c * conv.d_conv + (conv.d_conv - 1 - j)] : 0.0f;
        recent[kMaxConvWidth - 1 - j] = 0.0f;
        if (j >= 1 && j <= past) {
            const int64_t t = t0 - j;  // position of the input j steps before t0
            recent[kMaxConvWidth - 1 - j] = t >= 0 ? x[t * x_stride + c] : window[(past + t) * conv.d_inner + c];
        }
    }
    const float bias = conv.bias != nullptr ? conv.bias[c] : 0.0f;
    for (int64_t t = t0; t < t_end; ++t) {
#pragma unroll
        for (int j = 0; j < kMaxConvWidth - 1; ++j) recent[j] = recent[j + 1];
        recent[kMaxConvWidth - 1] = x[t * x_stride + c];
        float sum = bias;
#pragma unroll
        for (int j = 0; j < kMaxConvWidth; ++j) sum += taps[j] * recent[kMaxConvWidth - 1 - j];
        out[t * conv.d_inner + c] = silu(sum);
    }
}

// window <- last d_conv-1 entries of (window, x): position p of the concatenation is window row p while
// p < d_conv-1, else input p - (d_conv-1).
__global__ void conv1d_window_update_kernel(ConvWeights conv, const float* __restrict__ x, int64_t x_stride,
                                            int64_t n_tokens, float* __restrict__ window) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
    if (c >= conv.d_inner) return;
    const int64_t past = conv.d_conv - 1;
    float next[kMaxConvWidth];
#pragma unroll
    for (int j = 0; j < kMaxConvWidth; ++j) {
        if (j < past) {
            const int64_t p = n_tokens + j;  // in the concatenation of length past + n_tokens
            next[j] = p < past ? window[p * conv.d_inner + c] : x[(p - past) * x_stride + c];
        }
    }
#pragma unroll
    for (int j = 0; j < kMaxConvWidth; ++j) {
        if (j < past) window[j * conv.d_inner + c] = next[j];
    }
}

__global__ void conv1d_decode_kernel(ConvWeights conv, const float* __restrict__ x, int64_t x_stride,
                                     float* __restrict__ windows, int64_t slot_stride,
                                     const int32_t* __restrict__ slots, float* __restrict__ out) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
    const int b = blockIdx.y;
    if (c >= conv.d_inner) return;
    out[b * conv.d_inner + c] = conv_decode_step(conv, c, x[b * x_stride + c], windows + slots[b] * slot_stride);
}

unsigned channel_blocks(const ConvWeights& conv) {
    return static_cast<unsigned>((conv.d_inner + kConvThreads - 1) / kConvThreads);
}

}  // namespace

void check_conv_width(const ConvWeights& conv) {
    if (conv.d_conv < 1 || conv.d_conv > kMaxConvWidth) {
        fail("conv1d: kernel width ", conv.d_conv, " outside 1..", kMaxConvWidth);
    }
}

void launch_conv1d_prefill(const ConvWeights& conv, const float* x, int64_t x_stride, int64_t n_tokens, float* window,
                           float* out, cudaStream_t stream) {
    check_conv_width(conv);
    if (n_tokens == 0 || conv.d_inner == 0) return;
    const dim3 grid(channel_blocks(conv), static_cast<unsigned>((n_tokens + kConvTimeTile - 1) / kConvTimeTile));
    conv1d_prefill_kernel<<<grid, kConvThreads, 0, stream>>>(conv, x, x_stride, n_tokens, window, out);
    check_launch("conv1d_prefill_kernel");
    conv1d_window_update_kernel<<<channel_blocks(conv), kConvThreads, 0, stream>>>(conv, x, x_stride, n_tokens, window);
    check_launch("conv1d_window_update_kernel");
}

void launch_conv1d_decode(const ConvWeights& conv, const float* x, int64_t x_stride, int n_batch, float* windows,
                          int64_t slot_stride, const int32_t* slots, float* out, cudaStream_t stream) {
    check_conv_width(conv);
    if (n_batch == 0 || conv.d_inner == 0) return;
    const dim3 grid(channel_blocks(conv), static_cast<unsigned>(n_batch));
    conv1d_decode_kernel<<<grid, kConvThreads, 0, stream>>>(conv, x, x_stride, windows, slot_stride, slots, out);
    check_launch("conv1d_decode_kernel");
}

}  // namespace dendro::cuda
