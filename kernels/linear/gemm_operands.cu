#include "linear/gemm_operands.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "runtime/cuda_check.h"
#include "common/error.h"

namespace dendro::cuda {
namespace {

constexpr int kElementwiseThreads = 256;

unsigned blocks_for(int64_t n) {
    return static_cast<unsigned>((n + kElementwiseThreads - 1) / kElementwiseThreads);
}

template <typename Out>
__global__ void convert_activations_kernel(const float* __restrict__ src, int64_t src_stride, int64_t rows,
                                           int64_t cols, Out* __restrict__ dst) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, c = i % cols;
    const float value = src[r * src_stride + c];
    if constexpr (std::is_same_v<Out, __half>) {
        dst[i] = __float2half_rn(value);
    } else {
        dst[i] = __float2bfloat16_rn(value);
    }
}

__global__ void dequantize_q8_0_kernel(const signed char* __restrict__ quants,
                                       const unsigned short* __restrict__ scales, int64_t n, __half* __restrict__ dst) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    // Quants and scales are both row-major and rows hold whole blocks, so element i's scale is i / 32.
    const float scale = __half2float(__ushort_as_half(scales[i / kQ8_0BlockSize]));
    dst[i] = __float2half_rn(scale * static_cast<float>(quants[i]));
}

__global__ void add_bias_kernel(float* __restrict__ y, int64_t y_stride, int64_t rows, int64_t cols,
                                const float* __restrict__ bias) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, c = i % cols;
    y[r * y_stride + c] += bias[c];
}

}  // namespace

void launch_convert_activations(GgmlType to, const float* src, int64_t src_stride, int64_t rows, int64_t cols,
                                void* dst, cudaStream_t stream) {
    const int64_t n = rows * cols;
    if (n == 0) return;
    if (to == GgmlType::F16) {
        convert_activations_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(src, src_stride, rows, cols,
                                                                                      static_cast<__half*>(dst));
    } else if (to == GgmlType::BF16) {
        convert_activations_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(
            src, src_stride, rows, cols, static_cast<__nv_bfloat16*>(dst));
    } else {
        fail("convert_activations: target type ", ggml_type_name(to), " is not F16 or BF16");
    }
    check_launch("convert_activations_kernel");
}

void launch_dequantize_q8_0_to_f16(const DeviceMatrix& w, void* dst, cudaStream_t stream) {
    if (w.type != GgmlType::Q8_0) fail("dequantize_q8_0: matrix is ", ggml_type_name(w.type));
    const int64_t n = w.rows * w.cols;
    if (n == 0) return;
    dequantize_q8_0_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(
        static_cast<const signed char*>(w.data), w.scales, n, static_cast<__half*>(dst));
    check_launch("dequantize_q8_0_kernel");
}

void launch_add_bias(float* y, int64_t y_stride, int64_t rows, int64_t cols, const float* bias, cudaStream_t stream) {
    const int64_t n = rows * cols;
    if (n == 0) return;
    add_bias_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(y, y_stride, rows, cols, bias);
    check_launch("add_bias_kernel");
}

}  // namespace dendro::cuda
