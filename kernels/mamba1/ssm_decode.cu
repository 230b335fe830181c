// A block owns kDecodeChannels channels for every sequence of the batch. Phase 0: each sequence's x_proj row
// (dt_low, B, C) is staged in shared memory, summed from its partials in order, and normalised there for
// Falcon-style models. Phase 1: groups of kDtLanes lanes dot one channel's dt_proj row with each sequence's
// dt_low, the row read in 16-byte vectors (all of a block's rows in flight at once; element-wise where rows
// are not whole vectors); softplus(dt) goes to shared memory. Phase 2: a thread per (channel, sequence) walks
// the d_state states of its channel, updating them in place and summing C.h.
#include "mamba1/ssm_decode.h"

#include <algorithm>

#include "runtime/cuda_check.h"
#include "runtime/dependent_launch.cuh"
#include "common/error.h"
#include "linear/gemv.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kDecodeChannels = kWarpSize;
constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * kWarpSize;
constexpr int kDtLanes = 8;
constexpr int kDtChannelsPerPass = kDecodeThreads / kDtLanes;
static_assert(kDecodeChannels % kDtChannelsPerPass == 0);
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kNormSegments = 3;  // dt_low, B, C

size_t decode_shared_bytes(const SsmDecodeParams& p) {
    const int64_t row = p.dt_rank + 2 * p.d_state;
    const size_t floats = static_cast<size_t>(p.n_batch) * row + static_cast<size_t>(kMaxGemvBatch) * kDecodeChannels;
    return floats * sizeof(float);
}

template <GgmlType T>
__global__ void __launch_bounds__(kDecodeThreads) ssm_decode_kernel(SsmDecodeParams p, bool vector_rows) {
    extern __shared__ float shared[];
    const int64_t row_length = p.dt_rank + 2 * p.d_state;
    float* rows = shared;                                 // [n_batch][row_length]
    float* dt_values = shared + p.n_batch * row_length;   // [kMaxGemvBatch][kDecodeChannels]
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kDecodeChannels;
    wait_for_producers();
    allow_consumers();

    for (int64_t i = threadIdx.x; i < p.n_batch * row_length; i += blockDim.x) {
        const int64_t b = i / row_length, k = i % row_length;
        float sum = 0.0f;
        for (int s = 0; s < p.n_partials; ++s) sum += p.x_dbl[s * p.partial_stride + b * p.x_dbl_stride + k];
        rows[i] = sum;
    }
    __syncthreads();
    if (p.norm_dt_b_c) {
        // One warp per (sequence, segment), the same arithmetic as the prefill's segment norm.
        for (int job = warp; job < p.n_batch * kNormSegments; job += kDecodeWarps) {
            const int b = job / kNormSegments, segment = job % kNormSegments;
            const int64_t offset = segment == 0 ? 0 : p.dt_rank + (segment - 1) * p.d_state;
            const int64_t n = segment == 0 ? p.dt_rank : p.d_state;
            float* values = rows + b * row_length + offset;
            float sum_sq = 0.0f;
            for (int64_t i = lane; i < n; i += kWarpSize) sum_sq += values[i] * values[i];
            const float scale = rsqrtf(warp_sum(sum_sq) / static_cast<float>(n) + p.norm_eps);
            for (int64_t i = lane; i < n; i += kWarpSize) values[i] *= scale;
        }
        __syncthreads();
    }

    constexpr int E = kVectorElements<T>;
    const int sub = threadIdx.x % kDtLanes;
    const int group = threadIdx.x / kDtLanes;
#pragma unroll
    for (int pass = 0; pass < kDecodeChannels / kDtChannelsPerPass; ++pass) {
        const int ch = pass * kDtChannelsPerPass + group;
        const int64_t c = c0 + ch;
        const bool valid = c < p.d_inner;
        float acc[kMaxGemvBatch];
#pragma unroll
        for (int b = 0; b < kMaxGemvBatch; ++b) acc[b] = 0.0f;
        if (valid && vector_rows) {
            const int64_t n_vectors = p.dt_rank / E;
#pragma unroll 4
            for (int64_t v = sub; v < n_vectors; v += kDtLanes) {
                float w[E];
                load_weight_vector<T>(p.dt_weight, c, v, w);
#pragma unroll
                for (int b = 0; b < kMaxGemvBatch; ++b) {
                    if (b >= p.n_batch) break;
                    const float* x = rows + b * row_length + v * E;
#pragma unroll
                    for (int e = 0; e < E; ++e) acc[b] += w[e] * x[e];
                }
            }
        } else if (valid) {
            for (int64_t k = sub; k < p.dt_rank; k += kDtLanes) {
                const float w = weight_at<T>(p.dt_weight, c, k);
#pragma unroll
                for (int b = 0; b < kMaxGemvBatch; ++b) {
                    if (b < p.n_batch) acc[b] += w * rows[b * row_length + k];
                }
            }
        }
        const float bias = valid && p.dt_bias != nullptr ? p.dt_bias[c] : 0.0f;
#pragma unroll
        for (int b = 0; b < kMaxGemvBatch; ++b) {
            if (b >= p.n_batch) break;
            const float sum = group_sum<kDtLanes>(acc[b]);  // every lane takes part, valid or not
            if (sub == 0 && valid) dt_values[b * kDecodeChannels + ch] = softplus(sum + bias);
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

template <GgmlType T>
void launch_typed(const SsmDecodeParams& params, cudaStream_t stream) {
    const size_t shared_bytes = decode_shared_bytes(params);
    check(cudaFuncSetAttribute(ssm_decode_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(shared_bytes)),
          concat("allowing ", shared_bytes, " bytes of shared memory for the fused SSM decode"));
    const auto blocks = static_cast<unsigned>((params.d_inner + kDecodeChannels - 1) / kDecodeChannels);
    launch_dependent("ssm_decode_kernel", ssm_decode_kernel<T>, blocks, kDecodeThreads, shared_bytes, stream, params,
                     rows_are_vectors(params.dt_weight));
}

void launch_rows(const SsmDecodeParams& params, cudaStream_t stream) {
    switch (params.dt_weight.type) {
        case GgmlType::F32: return launch_typed<GgmlType::F32>(params, stream);
        case GgmlType::F16: return launch_typed<GgmlType::F16>(params, stream);
        case GgmlType::BF16: return launch_typed<GgmlType::BF16>(params, stream);
        case GgmlType::Q8_0: return launch_typed<GgmlType::Q8_0>(params, stream);
        default: fail("ssm_decode: unsupported dt_proj weight type ", ggml_type_name(params.dt_weight.type));
    }
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
