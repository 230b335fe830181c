// One decode step of the depthwise causal conv for one channel of one sequence, shared by the conv decode
// kernel and the fused conv + x_proj kernel: advances the channel's window by `input` and returns
// silu(bias + taps . (window, input)).
#pragma once

#include "ops/conv1d.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {

// window: the sequence's [d_conv-1][d_inner] window, oldest row first.
__device__ __forceinline__ float conv_decode_step(const ConvWeights& conv, int64_t c, float input, float* window) {
    const int64_t past = conv.d_conv - 1;
    float sum = conv.bias != nullptr ? conv.bias[c] : 0.0f;
    for (int64_t k = 0; k < past; ++k) {
        const float older = window[k * conv.d_inner + c];
        sum += conv.weight[c * conv.d_conv + k] * older;
        if (k > 0) window[(k - 1) * conv.d_inner + c] = older;
    }
    sum += conv.weight[c * conv.d_conv + past] * input;
    if (past > 0) window[(past - 1) * conv.d_inner + c] = input;
    return silu(sum);
}

}  // namespace dendro::cuda
