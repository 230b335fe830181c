// Layout (see conv_x_proj.h for why): 256 threads a block, for each of its slices in turn: phase 1, a thread
// per (sequence, channel of the slice) runs the conv step; the outputs stay in shared memory. Phase 2:
// kLanes = slice / E consecutive lanes cover one x_proj row's slice in 16-byte vectors (E elements each); the
// block's threads take kRowsPerPass rows at a time, kUnroll passes back to back so that each lane has kUnroll
// independent loads in flight; products with every sequence's conv outputs are summed over the kLanes lanes
// and the group's first lane stores the partial. The last slice of an odd channel count, and rows that are
// not 16-byte vectors, read element-wise.
#include "mamba1/conv_x_proj.h"

#include <algorithm>

#include "ops/conv_step.cuh"
#include "runtime/cuda_check.h"
#include "runtime/dependent_launch.cuh"
#include "common/error.h"
#include "linear/gemv.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kConvXProjThreads = 256;
constexpr int kUnroll = 4;
// Cap on partial rows (partials x sequences) that every SSM decode block sums while staging: at batch 1 each
// slice is its own block (most loads in flight), at batch 16 a block walks several slices into one partial so
// that the decode blocks' redundant L2 reads of the partials stay a few MB (the 2.8b shape: 8 x 16 rows of 192
// floats for each of 160 blocks, 16 MB).
constexpr int64_t kMaxPartialRows = 128;

__host__ __device__ inline int64_t slices(int64_t d_inner) { return (d_inner + kConvXProjSlice - 1) / kConvXProjSlice; }

int64_t slices_per_block(int64_t d_inner, int n_batch) {
    const int64_t wanted = std::max<int64_t>(1, std::min(slices(d_inner), kMaxPartialRows / n_batch));
    return (slices(d_inner) + wanted - 1) / wanted;
}

// One slice of the block's channels starting at c0: the conv step, then its products with every x_proj row,
// stored into the block's partial rows (first slice) or added to them.
template <GgmlType T, int NB>
__device__ __forceinline__ void accumulate_slice(const ConvXProjParams& p, int64_t c0, bool first_slice,
                                                 bool vector_rows, float (&conv_out)[NB][kConvXProjSlice],
                                                 float* partials) {
    constexpr int E = kVectorElements<T>;
    constexpr int kLanes = kConvXProjSlice / E;
    constexpr int kRowsPerPass = kConvXProjThreads / kLanes;
    static_assert(kConvXProjSlice % E == 0 && kWarpSize % kLanes == 0);
    const int64_t d_inner = p.conv.d_inner;
    for (int i = threadIdx.x; i < NB * kConvXProjSlice; i += kConvXProjThreads) {
        const int b = i / kConvXProjSlice, ch = i % kConvXProjSlice;
        const int64_t c = c0 + ch;
        float value = 0.0f;  // channels past d_inner and rows past n_batch contribute nothing
        if (b < p.n_batch && c < d_inner) {
            value = conv_decode_step(p.conv, c, p.x[b * p.x_stride + c], p.windows + p.slots[b] * p.slot_stride);
            p.u[b * p.u_stride + c] = value;
        }
        conv_out[b][ch] = value;
    }
    __syncthreads();

    const int sub = threadIdx.x % kLanes;  // this lane's E channels: [c0 + sub*E, c0 + sub*E + E)
    const int row_in_pass = threadIdx.x / kLanes;
    const int64_t first = c0 + sub * E;
    const bool whole_slice = vector_rows && c0 + kConvXProjSlice <= d_inner;
    const int64_t rows = p.x_proj.rows;
    // The row loop is uniform across the warp (every lane runs every pass) so that the shuffles in group_sum
    // see the whole warp; rows past the end load nothing and store nothing.
    for (int64_t base = 0; base < rows; base += kRowsPerPass * kUnroll) {
        float w[kUnroll][E];
#pragma unroll
        for (int r = 0; r < kUnroll; ++r) {
            const int64_t row = base + r * kRowsPerPass + row_in_pass;
            if (row >= rows) {
#pragma unroll
                for (int e = 0; e < E; ++e) w[r][e] = 0.0f;
            } else if (whole_slice) {
                load_weight_vector<T>(p.x_proj, row, first / E, w[r]);
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e) {
                    w[r][e] = first + e < d_inner ? weight_at<T>(p.x_proj, row, first + e) : 0.0f;
                }
            }
        }
        float acc[kUnroll][NB];
#pragma unroll
        for (int r = 0; r < kUnroll; ++r)
#pragma unroll
            for (int b = 0; b < NB; ++b) acc[r][b] = 0.0f;
#pragma unroll
        for (int b = 0; b < NB; ++b) {
            if (b >= p.n_batch) break;
#pragma unroll
            for (int e = 0; e < E; ++e) {
                const float x = conv_out[b][sub * E + e];
#pragma unroll
                for (int r = 0; r < kUnroll; ++r) acc[r][b] += w[r][e] * x;
            }
        }
#pragma unroll
        for (int r = 0; r < kUnroll; ++r) {
            const int64_t row = base + r * kRowsPerPass + row_in_pass;
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (b >= p.n_batch) break;
                const float sum = group_sum<kLanes>(acc[r][b]);
                // The same thread owns (row, b) in every slice of the block: no race, a fixed order.
                if (sub == 0 && row < rows) {
                    float* out = partials + b * rows + row;
                    *out = first_slice ? sum : *out + sum;
                }
            }
        }
    }
    __syncthreads();  // conv_out is rewritten by the next slice
}

template <GgmlType T, int NB>
__global__ void __launch_bounds__(kConvXProjThreads)
    conv_x_proj_kernel(ConvXProjParams p, int64_t slices_per_block, bool vector_rows) {
    __shared__ float conv_out[NB][kConvXProjSlice];
    wait_for_producers();
    allow_consumers();
    const int64_t first = blockIdx.x * slices_per_block;
    const int64_t last = first + slices_per_block < slices(p.conv.d_inner) ? first + slices_per_block
                                                                           : slices(p.conv.d_inner);
    float* partials = p.partials + blockIdx.x * p.partial_stride;
    for (int64_t slice = first; slice < last; ++slice) {
        accumulate_slice<T, NB>(p, slice * kConvXProjSlice, slice == first, vector_rows, conv_out, partials);
    }
}

template <GgmlType T, int NB>
void launch_typed(const ConvXProjParams& p, cudaStream_t stream) {
    const auto blocks = static_cast<unsigned>(conv_x_proj_partials(p.conv.d_inner, p.n_batch));
    launch_dependent("conv_x_proj_kernel", conv_x_proj_kernel<T, NB>, blocks, kConvXProjThreads, 0, stream, p,
                     slices_per_block(p.conv.d_inner, p.n_batch), rows_are_vectors(p.x_proj));
}

template <GgmlType T>
void launch_batch(const ConvXProjParams& p, cudaStream_t stream) {
    // The batch is rounded up to an instantiated width; rows past n_batch are skipped inside.
    if (p.n_batch <= 1) return launch_typed<T, 1>(p, stream);
    if (p.n_batch <= 2) return launch_typed<T, 2>(p, stream);
    if (p.n_batch <= 4) return launch_typed<T, 4>(p, stream);
    if (p.n_batch <= 8) return launch_typed<T, 8>(p, stream);
    return launch_typed<T, 16>(p, stream);
}

}  // namespace

int64_t conv_x_proj_partials(int64_t d_inner, int n_batch) {
    const int64_t per_block = slices_per_block(d_inner, n_batch);
    return (slices(d_inner) + per_block - 1) / per_block;
}

int64_t conv_x_proj_max_partials(int64_t d_inner) { return slices(d_inner); }

void launch_conv_x_proj(const ConvXProjParams& params, cudaStream_t stream) {
    if (params.n_batch < 1 || params.n_batch > kMaxGemvBatch) {
        fail("conv_x_proj: batch ", params.n_batch, " outside 1..", kMaxGemvBatch);
    }
    check_conv_width(params.conv);
    if (params.x_proj.cols != params.conv.d_inner) {
        fail("conv_x_proj: x_proj has ", params.x_proj.cols, " columns for ", params.conv.d_inner, " channels");
    }
    if (params.conv.d_inner == 0 || params.x_proj.rows == 0) return;
    switch (params.x_proj.type) {
        case GgmlType::F32: return launch_batch<GgmlType::F32>(params, stream);
        case GgmlType::F16: return launch_batch<GgmlType::F16>(params, stream);
        case GgmlType::BF16: return launch_batch<GgmlType::BF16>(params, stream);
        case GgmlType::Q8_0: return launch_batch<GgmlType::Q8_0>(params, stream);
        default: fail("conv_x_proj: unsupported weight type ", ggml_type_name(params.x_proj.type));
    }
}

}  // namespace dendro::cuda
