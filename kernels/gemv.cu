// Decode GEMV. Decode reads every weight once per token, so it is bound by device-memory bandwidth: each warp
// owns kRowsPerWarp rows and its lanes stream them in 16-byte vectors (coalesced 512 bytes per warp-load, the
// rows' loads independent so several are in flight), converting to fp32 in registers and accumulating the
// products with every batch row's activations. Several rows per warp let one activation load (from L1) serve
// several weight rows, which keeps L1 traffic below the weight stream at batch 16. Rows whose byte length is
// not a multiple of 16 (odd shapes) take an element-wise path.
#include "gemv.h"

#include <algorithm>

#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "common/error.h"
#include "weight_access.cuh"

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
                int n_batch, float* __restrict__ y, int64_t y_stride, bool vector_path) {
    constexpr int R = rows_per_warp<NB>();
    constexpr int E = kVectorElements<T>;
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warp = static_cast<int64_t>(blockIdx.x) * kGemvWarpsPerBlock + threadIdx.x / kWarpSize;
    const int64_t row0 = warp * R;
    // The weights do not depend on the previous kernel: start pulling this warp's first vectors into L2
    // while it finishes (dependent_launch.cuh), then wait for the activations.
    if (vector_path && row0 < w.rows && lane < w.cols / E) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int64_t row = min(row0 + r, w.rows - 1);
            prefetch_to_l2(static_cast<const uint8_t*>(w.data) + (row * (w.cols / E) + lane) * kVectorBytes);
        }
    }
    wait_for_producers();
    allow_consumers();
    if (row0 >= w.rows) return;

    float acc[R][NB];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[r][b] = 0.0f;

    if (vector_path) {
        const int64_t n_vectors = w.cols / E;
#pragma unroll 2
        for (int64_t v = lane; v < n_vectors; v += kWarpSize) {
            float wv[R][E];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int64_t row = min(row0 + r, w.rows - 1);  // clamped rows are computed but not stored
                load_weight_vector<T>(w, row, v, wv[r]);
            }
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (b >= n_batch) break;
                const float4* xv = reinterpret_cast<const float4*>(x + b * x_stride + v * E);
#pragma unroll
                for (int q = 0; q < E / 4; ++q) {
                    const float4 xq = __ldg(xv + q);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        acc[r][b] += wv[r][4 * q] * xq.x + wv[r][4 * q + 1] * xq.y + wv[r][4 * q + 2] * xq.z +
                                     wv[r][4 * q + 3] * xq.w;
                    }
                }
            }
        }
    } else {
        for (int64_t k = lane; k < w.cols; k += kWarpSize) {
            float wk[R];
#pragma unroll
            for (int r = 0; r < R; ++r) wk[r] = weight_at<T>(w, min(row0 + r, w.rows - 1), k);
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (b >= n_batch) break;
                const float xk = __ldg(x + b * x_stride + k);
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][b] += wk[r] * xk;
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t row = row0 + r;
#pragma unroll
        for (int b = 0; b < NB; ++b) {
            if (b >= n_batch) break;
            const float sum = warp_sum(acc[r][b]);
            if (lane == 0 && row < w.rows) y[b * y_stride + row] = sum + (bias != nullptr ? bias[row] : 0.0f);
        }
    }
}

template <GgmlType T, int NB>
void launch_typed(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                  int64_t y_stride, cudaStream_t stream) {
    constexpr int R = rows_per_warp<NB>();
    const bool x_aligned = x_stride % 4 == 0 && reinterpret_cast<uintptr_t>(x) % kVectorBytes == 0;
    const int64_t warps = (w.rows + R - 1) / R;
    const int64_t blocks = (warps + kGemvWarpsPerBlock - 1) / kGemvWarpsPerBlock;
    launch_dependent("gemv_kernel", gemv_kernel<T, NB>, static_cast<unsigned>(blocks), kGemvWarpsPerBlock * kWarpSize, 0,
                     stream, w, bias, x, x_stride, n_batch, y, y_stride, rows_are_vectors(w) && x_aligned);
}

template <GgmlType T>
void launch_batch(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                  int64_t y_stride, cudaStream_t stream) {
    // The batch is rounded up to an instantiated width; rows past n_batch are skipped inside.
    if (n_batch <= 1) return launch_typed<T, 1>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
    if (n_batch <= 2) return launch_typed<T, 2>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
    if (n_batch <= 4) return launch_typed<T, 4>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
    if (n_batch <= 8) return launch_typed<T, 8>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
    return launch_typed<T, 16>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
}

}  // namespace

void launch_gemv(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                 int64_t y_stride, cudaStream_t stream) {
    if (n_batch < 1 || n_batch > kMaxGemvBatch) fail("gemv: batch ", n_batch, " outside 1..", kMaxGemvBatch);
    if (w.rows == 0) return;
    switch (w.type) {
        case GgmlType::F32: return launch_batch<GgmlType::F32>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
        case GgmlType::F16: return launch_batch<GgmlType::F16>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
        case GgmlType::BF16: return launch_batch<GgmlType::BF16>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
        case GgmlType::Q8_0: return launch_batch<GgmlType::Q8_0>(w, bias, x, x_stride, n_batch, y, y_stride, stream);
        default: fail("gemv: unsupported weight type ", ggml_type_name(w.type));
    }
}

}  // namespace dendro::cuda
