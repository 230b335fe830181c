// Mamba's depthwise causal conv1d + bias + SiLU on the device, with the conv window (the last d_conv-1 inputs
// of each channel, oldest first: [d_conv-1][d_inner]) carried between calls as SequenceState keeps it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dendro::cuda {

inline constexpr int kMaxConvWidth = 8;

struct ConvWeights {
    int64_t d_inner = 0;
    int64_t d_conv = 0;              // 1..kMaxConvWidth
    const float* weight = nullptr;   // [d_inner][d_conv], tap d_conv-1 multiplies the newest input
    const float* bias = nullptr;     // [d_inner] or null
};

// Throws unless conv.d_conv is within 1..kMaxConvWidth (the kernels keep the window in registers).
void check_conv_width(const ConvWeights& conv);

// Prefill of one sequence: x is n_tokens rows (x_stride apart) of d_inner conv inputs, out receives
// n_tokens x d_inner outputs; window ([d_conv-1][d_inner]) is read as the past and replaced by the last
// d_conv-1 inputs of (window, x).
void launch_conv1d_prefill(const ConvWeights& conv, const float* x, int64_t x_stride, int64_t n_tokens, float* window,
                           float* out, cudaStream_t stream);

// Decode of n_batch sequences, one token each: row b of x belongs to the sequence whose window is at
// windows + slots[b] * slot_stride; each window advances by one input.
void launch_conv1d_decode(const ConvWeights& conv, const float* x, int64_t x_stride, int n_batch, float* windows,
                          int64_t slot_stride, const int32_t* slots, float* out, cudaStream_t stream);

}  // namespace dendro::cuda
