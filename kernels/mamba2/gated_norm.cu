// One block per (group, row): the gate and the sum of squares in one pass over the group's channels, the
// scaling in a second (the group's d_inner / n_group floats stay in L1).
#include "mamba2/gated_norm.h"

#include <cub/block/block_reduce.cuh>

#include "common/error.h"
#include "runtime/cuda_check.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kGatedNormThreads = 256;

__global__ void __launch_bounds__(kGatedNormThreads) gated_rms_norm_kernel(GatedNormParams p) {
    using BlockReduce = cub::BlockReduce<float, kGatedNormThreads>;
    __shared__ typename BlockReduce::TempStorage reduce_storage;
    __shared__ float scale;
    const int64_t group_size = p.d_inner / p.n_group;
    const int64_t first = blockIdx.x * group_size;
    float* y = p.y + blockIdx.y * p.y_stride + first;
    const float* z = p.z + blockIdx.y * p.z_stride + first;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < group_size; i += kGatedNormThreads) {
        const float g = y[i] * silu(z[i]);
        y[i] = g;
        sum_sq += g * g;
    }
    const float total = BlockReduce(reduce_storage).Sum(sum_sq);
    if (threadIdx.x == 0) scale = rsqrtf(total / static_cast<float>(group_size) + p.eps);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < group_size; i += kGatedNormThreads) y[i] = p.weight[first + i] * (y[i] * scale);
}

}  // namespace

void launch_gated_rms_norm(const GatedNormParams& p, cudaStream_t stream) {
    if (p.n_group < 1 || p.d_inner % p.n_group != 0) {
        fail("gated RMSNorm: ", p.d_inner, " channels do not split into ", p.n_group, " groups");
    }
    if (p.n_rows == 0 || p.d_inner == 0) return;
    const dim3 grid(static_cast<unsigned>(p.n_group), static_cast<unsigned>(p.n_rows));
    gated_rms_norm_kernel<<<grid, kGatedNormThreads, 0, stream>>>(p);
    check_launch("gated_rms_norm_kernel");
}

}  // namespace dendro::cuda
