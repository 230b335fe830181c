// A linear layer on the device: y = W x (+ bias) for n activation rows, by the decode GEMV for up to
// kMaxGemvBatch rows and by the cuBLAS GEMM above that.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "weights/device_matrix.h"
#include "linear/gemm.h"

namespace dendro::cuda {

void project(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int64_t n, float* y,
             int64_t y_stride, Gemm& gemm, cudaStream_t stream);

}  // namespace dendro::cuda
