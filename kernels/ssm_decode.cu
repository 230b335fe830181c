// A block owns kDecodeChannels channels for every sequence of the batch. Phase 1: the block's dt_proj rows
// are dotted with each sequence's dt_low (staged in shared memory with B and C) by warps striding the row,
// so the weight reads are coalesced; softplus(dt) goes to shared memory. Phase 2: a thread per (channel,
// sequence) walks the d_state states of its channel, updating them in place and summing C.h.
#include "ssm_decode.h"

#include <algorithm>

#include "cuda_check.h"
#include "common/error.h"
#include "gemv.h"
#include "weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kDecodeChannels = kWarpSize;
constexpr int kDecodeWarps = 4;
constexpr float kLog2e = 1.4426950408889634f;

size_t decode_shared_bytes(const SsmDecodeParams& p) {
    const int64_t row = p.dt_rank + 2 * p.d_state;
    const size_t floats = static_cast<size_t>(p.n_batch) * row + static_cast<size_t>(kMaxGemvBatch) * kDecodeChannels;
    return floats * sizeof(float);
}

__global__ void __launch_bounds__(kDecodeWarps* kWarpSize) ssm_decode_kernel(SsmDecodeParams p) {
    extern __shared__ float shared[];
    const int64_t row_length = p.dt_rank + 2 * p.d_state;
    float* rows = shared;                                 // [n_batch][row_length]
    float* dt_values = shared + p.n_batch * row_length;   // [kMaxGemvBatch][kDecodeChannels]
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kDecodeChannels;

    for (int64_t i = threadIdx.x; i < p.n_batch * row_length; i += blockDim.x) {
        const int64_t b = i / row_length, k = i % row_length;
        rows[i] = p.x_dbl[b * p.x_dbl_stride + k];
    }
    __syncthreads();

    for (int ch = warp; ch < kDecodeChannels; ch += kDecodeWarps) {
        const int64_t c = c0 + ch;
        if (c >= p.d_inner) break;
        float acc[kMaxGemvBatch];
#pragma unroll
        for (int b = 0; b < kMaxGemvBatch; ++b) acc[b] = 0.0f;
        for (int64_t k = lane; k < p.dt_rank; k += kWarpSize) {
            const float w = weight_at(p.dt_weight, c, k);
#pragma unroll
            for (int b = 0; b < kMaxGemvBatch; ++b) {
                if (b < p.n_batch) acc[b] += w * rows[b * row_length + k];
            }
        }
        const float bias = p.dt_bias != nullptr ? p.dt_bias[c] : 0.0f;
#pragma unroll
        for (int b = 0; b < kMaxGemvBatch; ++b) {
            if (b >= p.n_batch) break;
            const float sum = warp_sum(acc[b]);
            if (lane == 0) dt_values[b * kDecodeChannels + ch] = softplus(sum + bias);
        }
    }
    __syncthreads();

    const int64_t c = c0 + lane;
    if (c >= p.d_inner) return;
    for (int b = warp; b < p.n_batch; b += kDecodeWarps) {
        const float dt = dt_values[b * kDecodeChannels + lane];
        const float u = p.u[b * p.u_stride + c];
        const float* B = rows + b * row_length + p.dt_rank;
        const float* C = B + p.d_state;
        float* h = p.states + p.slots[b] * p.slot_stride + c * p.d_state;
        const float* A = p.A + c * p.d_state;
        float out = 0.0f;
        for (int64_t n = 0; n < p.d_state; ++n) {
            const float next = exp2f(dt * A[n] * kLog2e) * h[n] + dt * B[n] * u;
            h[n] = next;
            out += C[n] * next;
        }
        p.y[b * p.y_stride + c] = (out + p.D[c] * u) * silu(p.z[b * p.z_stride + c]);
    }
}

}  // namespace

namespace {

void launch_rows(const SsmDecodeParams& params, cudaStream_t stream) {
    const size_t shared_bytes = decode_shared_bytes(params);
    check(cudaFuncSetAttribute(ssm_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(shared_bytes)),
          concat("allowing ", shared_bytes, " bytes of shared memory for the fused SSM decode"));
    const auto blocks = static_cast<unsigned>((params.d_inner + kDecodeChannels - 1) / kDecodeChannels);
    ssm_decode_kernel<<<blocks, kDecodeWarps * kWarpSize, shared_bytes, stream>>>(params);
    check_launch("ssm_decode_kernel");
}

}  // namespace

void launch_ssm_decode(const SsmDecodeParams& params, cudaStream_t stream) {
    if (params.n_batch < 1 || params.n_batch > kMaxSsmDecodeBatch) {
        fail("ssm_decode: batch ", params.n_batch, " outside 1..", kMaxSsmDecodeBatch);
    }
    if (params.d_inner == 0) return;
    // The kernel keeps kMaxGemvBatch rows' dt accumulators in registers; larger batches go in such groups.
    for (int first = 0; first < params.n_batch; first += kMaxGemvBatch) {
        SsmDecodeParams group = params;
        group.n_batch = std::min(kMaxGemvBatch, params.n_batch - first);
        group.x_dbl += first * params.x_dbl_stride;
        group.u += first * params.u_stride;
        group.z += first * params.z_stride;
        group.slots += first;
        group.y += first * params.y_stride;
        launch_rows(group, stream);
    }
}

}  // namespace dendro::cuda
