// Prefill projections through cuBLAS: Y (n x w.rows, fp32) = X (n x w.cols, fp32) W^T, accumulated in fp32.
// F32 weights multiply the fp32 activations directly (no TF32). F16 and BF16 weights multiply activations
// rounded to the same type on tensor cores. Q8_0 weights are expanded to fp16 into a scratch matrix just before
// their GEMM: at prefill sizes the expansion (one read of the quants, one fp16 write) costs a small fraction of
// the GEMM it feeds, and keeps Q8_0 resident at 8.5 bits a weight; decode never takes this path (see gemv.h).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "runtime/device_buffer.h"
#include "weights/device_matrix.h"

namespace dendro::cuda {

class Gemm {
public:
    explicit Gemm(cudaStream_t stream);
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;

    // Allocates, once, the scratch that GEMMs of up to max_rows activation rows with any of these weights
    // need, so that no later run() allocates or synchronises: a run inside a CUDA graph capture (decode
    // batches above kMaxGemvBatch) must not, and run() fails instead of growing scratch while capturing.
    void reserve(int64_t max_rows, std::span<const DeviceMatrix> weights);
    // All pointers are device pointers; x rows are x_stride floats apart, y rows y_stride floats apart.
    void run(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n, float* y, int64_t y_stride);
    // Scratch memory the GEMMs have needed so far (converted activations, expanded Q8_0 weights).
    uint64_t scratch_bytes() const {
        return activations_.bytes() + expanded_weights_.bytes() + workspace_.bytes();
    }

private:
    void* activation_scratch(size_t bytes);
    void* weight_scratch(size_t bytes);

    cudaStream_t stream_;
    cublasHandle_t handle_ = nullptr;
    DeviceBuffer workspace_;  // cuBLAS's own, set on the handle so that it never allocates one in a capture
    DeviceBuffer activations_;
    DeviceBuffer expanded_weights_;
};

}  // namespace dendro::cuda
