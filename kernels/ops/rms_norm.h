// RMS normalisation on the device, fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dendro::cuda {

// For each of n_rows rows of d floats (row r at h + r*d): h += delta (when delta is not null; the residual add
// of the previous layer's output), then out = h / sqrt(mean(h^2) + eps) * weight. out rows are d apart.
void launch_residual_rms_norm(float* h, const float* delta, const float* weight, float* out, int64_t n_rows, int64_t d,
                              float eps, cudaStream_t stream);

// In place, without weight, on a segment of each row: x[r*stride + offset + i] for i < n (Falcon-Mamba's norms
// of dt, B and C).
void launch_rms_norm_segment(float* x, int64_t stride, int64_t offset, int64_t n, int64_t n_rows, float eps,
                             cudaStream_t stream);

}  // namespace dendro::cuda
