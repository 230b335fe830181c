#include "ops/rms_norm.h"

#include <cub/block/block_reduce.cuh>

#include "runtime/cuda_check.h"
#include "runtime/dependent_launch.cuh"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kNormThreads = 256;

// One block per row: the add and the sum of squares in one pass (the row then sits in L1/L2), the scaling
// in a second.
__global__ void __launch_bounds__(kNormThreads)
    residual_rms_norm_kernel(float* __restrict__ h, const float* __restrict__ delta, const float* __restrict__ weight,
                             float* __restrict__ out, int64_t d, float eps) {
    using BlockReduce = cub::BlockReduce<float, kNormThreads>;
    __shared__ typename BlockReduce::TempStorage reduce_storage;
    __shared__ float inv_rms;
    wait_for_producers();
    allow_consumers();
    float* row = h + blockIdx.x * d;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kNormThreads) {
        float value = row[i];
        if (delta != nullptr) {
            value += delta[blockIdx.x * d + i];
            row[i] = value;
        }
        sum_sq += value * value;
    }
    const float total = BlockReduce(reduce_storage).Sum(sum_sq);
    if (threadIdx.x == 0) inv_rms = rsqrtf(total / static_cast<float>(d) + eps);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < d; i += kNormThreads) out[blockIdx.x * d + i] = row[i] * inv_rms * weight[i];
}

// One warp per row segment (segments are short: dt_rank or d_state).
__global__ void rms_norm_segment_kernel(float* __restrict__ x, int64_t stride, int64_t offset, int64_t n,
                                        int64_t n_rows, float eps) {
    const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
    if (row >= n_rows) return;
    const int lane = threadIdx.x % kWarpSize;
    float* segment = x + row * stride + offset;
    float sum_sq = 0.0f;
    for (int64_t i = lane; i < n; i += kWarpSize) sum_sq += segment[i] * segment[i];
    const float scale = rsqrtf(warp_sum(sum_sq) / static_cast<float>(n) + eps);
    for (int64_t i = lane; i < n; i += kWarpSize) segment[i] *= scale;
}

}  // namespace

void launch_residual_rms_norm(float* h, const float* delta, const float* weight, float* out, int64_t n_rows, int64_t d,
                              float eps, cudaStream_t stream) {
    if (n_rows == 0) return;
    launch_dependent("residual_rms_norm_kernel", residual_rms_norm_kernel, static_cast<unsigned>(n_rows), kNormThreads,
                     0, stream, h, delta, weight, out, d, eps);
}

void launch_rms_norm_segment(float* x, int64_t stride, int64_t offset, int64_t n, int64_t n_rows, float eps,
                             cudaStream_t stream) {
    if (n_rows == 0 || n == 0) return;
    constexpr int kRowsPerBlock = kNormThreads / kWarpSize;
    const auto blocks = static_cast<unsigned>((n_rows + kRowsPerBlock - 1) / kRowsPerBlock);
    rms_norm_segment_kernel<<<blocks, kNormThreads, 0, stream>>>(x, stride, offset, n, n_rows, eps);
    check_launch("rms_norm_segment_kernel");
}

}  // namespace dendro::cuda
