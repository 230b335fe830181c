// Matrix-vector products for decode (1 to kMaxGemvBatch activation rows): y[b] = W x[b] (+ bias), fp32
// activations and accumulation, weights streamed once from device memory whatever the batch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "device_matrix.h"

namespace dendro::cuda {

inline constexpr int kMaxGemvBatch = 16;

// x: n_batch rows of w.cols floats, x_stride apart; y: n_batch rows of w.rows floats, y_stride apart.
// bias (w.rows floats) may be null. All pointers are device pointers.
void launch_gemv(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                 int64_t y_stride, cudaStream_t stream);

}  // namespace dendro::cuda
