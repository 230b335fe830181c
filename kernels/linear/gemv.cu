// Decode GEMV. Decode reads every weight once per token, so it is bound by device-memory bandwidth: each warp
// owns kRowsPerWarp rows and its lanes stream them in 16-byte vectors (coalesced 512 bytes per warp-load, the
// rows' loads independent so several are in flight), converting to fp32 in registers and accumulating the
// products with every batch row's activations. Several rows per warp let one activation load (from L1) serve
// several weight rows, which keeps L1 traffic below the weight stream at batch 16. Rows whose byte length is
// not a multiple of 16 (odd shapes) take an element-wise path. Before waiting for the previous kernel
// (dependent_launch.cuh) each warp prefetches its first weight vectors into L2. The fusions of gemv.h add a
// prologue (1/rms from the residual GEMV's partial sums, the norm weight applied as x is loaded) and an
// epilogue (the residual add and this block's sums of squares).
#include "linear/gemv.h"

#include <algorithm>

#include "runtime/cuda_check.h"
#include "runtime/dependent_launch.cuh"
#include "common/error.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kGemvWarpsPerBlock = 4;

template <int NB>
constexpr int rows_per_warp() {
    return NB >= 8 ? 4 : (NB >= 2 ? 2 : 1);
}

template <GgmlType T, int NB>
__global__ void __launch_bounds__(kGemvWarpsPerBlock* kWarpSize)
    gemv_kernel(DeviceMatrix w, const float* __restrict__ bias, const float* __restrict__ x, int64_t x_stride,
                int n_batch, float* __restrict__ y, int64_t y_stride, bool vector_path, GemvFusion fusion) {
    constexpr int R = rows_per_warp<NB>();
    constexpr int E = kVectorElements<T>;
    __shared__ float inv_rms[NB];
    __shared__ float block_squares[kGemvWarpsPerBlock][NB];
    const int lane = threadIdx.x % kWarpSize;
    const int warp_in_block = threadIdx.x / kWarpSize;
    const int64_t warp = static_cast<int64_t>(blockIdx.x) * kGemvWarpsPerBlock + warp_in_block;
    const int64_t row0 = warp * R;
    const bool active = row0 < w.rows;  // uniform across the warp
    // The weights do not depend on the previous kernel: start pulling this warp's first vectors into L2
    // while it finishes (dependent_launch.cuh), then wait for the activations.
    if (vector_path && active && lane < w.cols / E) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int64_t row = min(row0 + r, w.rows - 1);
            prefetch_to_l2(static_cast<const uint8_t*>(w.data) + (row * (w.cols / E) + lane) * kVectorBytes);
        }
    }
    wait_for_producers();
    allow_consumers();

    const float* norm = fusion.norm_weight;
    if (norm != nullptr) {
        // 1/rms of each activation row from the residual GEMV's per-block sums of squares, in a fixed order.
        if (warp_in_block == 0) {
            for (int b = 0; b < n_batch; ++b) {
                float sum = 0.0f;
                for (int64_t i = lane; i < fusion.n_square_partials; i += kWarpSize) {
                    sum += fusion.square_partials[i * n_batch + b];
                }
                sum = warp_sum(sum);
                if (lane == 0) inv_rms[b] = rsqrtf(sum / static_cast<float>(w.cols) + fusion.eps);
            }
        }
        __syncthreads();
    }

    float acc[R][NB];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[r][b] = 0.0f;

    if (active && vector_path) {
        const int64_t n_vectors = w.cols / E;
#pragma unroll 2
        for (int64_t v = lane; v < n_vectors; v += kWarpSize) {
            float wv[R][E];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int64_t row = min(row0 + r, w.rows - 1);  // clamped rows are computed but not stored
                load_weight_vector<T>(w, row, v, wv[r]);
            }
            float4 g[E / 4];
#pragma unroll
            for (int q = 0; q < E / 4; ++q) {
                g[q] = norm != nullptr ? __ldg(reinterpret_cast<const float4*>(norm + v * E) + q)
                                       : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            }
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (b >= n_batch) break;
                const float4* xv = reinterpret_cast<const float4*>(x + b * x_stride + v * E);
#pragma unroll
                for (int q = 0; q < E / 4; ++q) {
                    float4 xq = __ldg(xv + q);
                    if (norm != nullptr) xq = make_float4(xq.x * g[q].x, xq.y * g[q].y, xq.z * g[q].z, xq.w * g[q].w);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        acc[r][b] += wv[r][4 * q] * xq.x + wv[r][4 * q + 1] * xq.y + wv[r][4 * q + 2] * xq.z +
                                     wv[r][4 * q + 3] * xq.w;
                    }
                }
            }
        }
    } else if (active) {
        for (int64_t k = lane; k < w.cols; k += kWarpSize) {
            float wk[R];
#pragma unroll
            for (int r = 0; r < R; ++r) wk[r] = weight_at<T>(w, min(row0 + r, w.rows - 1), k);
            const float gk = norm != nullptr ? __ldg(norm + k) : 1.0f;
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (b >= n_batch) break;
                const float xk = __ldg(x + b * x_stride + k) * gk;
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][b] += wk[r] * xk;
            }
        }
    }

    float squares[NB];
#pragma unroll
    for (int b = 0; b < NB; ++b) squares[b] = 0.0f;
    if (active) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int64_t row = row0 + r;
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (b >= n_batch) break;
                float sum = warp_sum(acc[r][b]);
                if (norm != nullptr) sum *= inv_rms[b];
                if (lane == 0 && row < w.rows) {
                    float value = sum + (bias != nullptr ? bias[row] : 0.0f);
                    if (fusion.residual) value += y[b * y_stride + row];  // the residual stream, as the CPU adds it
                    y[b * y_stride + row] = value;
                    squares[b] += value * value;
                }
            }
        }
    }
    if (fusion.residual_squares != nullptr) {
        // This block's share of each row's sum of squares, for the next GEMV's folded norm.
        if (lane == 0) {
#pragma unroll
            for (int b = 0; b < NB; ++b) block_squares[warp_in_block][b] = squares[b];
        }
        __syncthreads();
        if (threadIdx.x < n_batch) {
            float total = 0.0f;
#pragma unroll
            for (int i = 0; i < kGemvWarpsPerBlock; ++i) total += block_squares[i][threadIdx.x];
            fusion.residual_squares[blockIdx.x * n_batch + threadIdx.x] = total;
        }
    }
}

// Batch rows rounded up to an instantiated width (rows past n_batch are skipped inside).
int batch_width(int n_batch) { return n_batch <= 1 ? 1 : n_batch <= 2 ? 2 : n_batch <= 4 ? 4 : n_batch <= 8 ? 8 : 16; }

int runtime_rows_per_warp(int width) {
    switch (width) {
        case 1: return rows_per_warp<1>();
        case 2: return rows_per_warp<2>();
        case 4: return rows_per_warp<4>();
        case 8: return rows_per_warp<8>();
        default: return rows_per_warp<16>();
    }
}

template <GgmlType T, int NB>
void launch_typed(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                  int64_t y_stride, cudaStream_t stream, const GemvFusion& fusion) {
    const bool x_aligned = x_stride % 4 == 0 && reinterpret_cast<uintptr_t>(x) % kVectorBytes == 0;
    launch_dependent("gemv_kernel", gemv_kernel<T, NB>, static_cast<unsigned>(gemv_blocks(w.rows, n_batch)),
                     kGemvWarpsPerBlock * kWarpSize, 0, stream, w, bias, x, x_stride, n_batch, y, y_stride,
                     rows_are_vectors(w) && x_aligned, fusion);
}

template <GgmlType T>
void launch_batch(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                  int64_t y_stride, cudaStream_t stream, const GemvFusion& fusion) {
    switch (batch_width(n_batch)) {
        case 1: return launch_typed<T, 1>(w, bias, x, x_stride, n_batch, y, y_stride, stream, fusion);
        case 2: return launch_typed<T, 2>(w, bias, x, x_stride, n_batch, y, y_stride, stream, fusion);
        case 4: return launch_typed<T, 4>(w, bias, x, x_stride, n_batch, y, y_stride, stream, fusion);
        case 8: return launch_typed<T, 8>(w, bias, x, x_stride, n_batch, y, y_stride, stream, fusion);
        default: return launch_typed<T, 16>(w, bias, x, x_stride, n_batch, y, y_stride, stream, fusion);
    }
}

}  // namespace

int64_t gemv_blocks(int64_t rows, int n_batch) {
    const int64_t rows_per_block = int64_t{runtime_rows_per_warp(batch_width(n_batch))} * kGemvWarpsPerBlock;
    return (rows + rows_per_block - 1) / rows_per_block;
}

void launch_gemv(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                 int64_t y_stride, cudaStream_t stream, const GemvFusion& fusion) {
    if (n_batch < 1 || n_batch > kMaxGemvBatch) fail("gemv: batch ", n_batch, " outside 1..", kMaxGemvBatch);
    if (w.rows == 0) return;
    const auto run = [&]<GgmlType T>() { launch_batch<T>(w, bias, x, x_stride, n_batch, y, y_stride, stream, fusion); };
    switch (w.type) {
        case GgmlType::F32: return run.template operator()<GgmlType::F32>();
        case GgmlType::F16: return run.template operator()<GgmlType::F16>();
        case GgmlType::BF16: return run.template operator()<GgmlType::BF16>();
        case GgmlType::Q8_0: return run.template operator()<GgmlType::Q8_0>();
        default: fail("gemv: unsupported weight type ", ggml_type_name(w.type));
    }
}

}  // namespace dendro::cuda
