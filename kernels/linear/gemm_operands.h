// Operand preparation around the cuBLAS prefill GEMM: fp32 activations to the weights' 16-bit type, Q8_0
// weights expanded to fp16 (cuBLAS has no Q8_0 type), and the bias epilogue.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "weights/device_matrix.h"
#include "format/ggml_types.h"

namespace dendro::cuda {

// dst (rows x cols, packed) = src (rows x cols, src_stride apart) rounded to F16 or BF16 (nearest even).
void launch_convert_activations(GgmlType to, const float* src, int64_t src_stride, int64_t rows, int64_t cols,
                                void* dst, cudaStream_t stream);
// dst (w.rows x w.cols fp16) = the Q8_0 matrix w dequantized, NOT exactly: d * q is formed exactly in fp32 (an
// 11-bit scale times a 7-bit quant needs at most 18 significant bits) and rounded to fp16's 11, so a weight may
// differ from d * q by up to 2^-11 relative (more below fp16's normal range, inf above 65504). Decode (gemv.h)
// uses d * q unrounded: prefill GEMMs and decode see slightly different Q8_0 weights (docs/cuda-notes.md).
void launch_dequantize_q8_0_to_f16(const DeviceMatrix& w, void* dst, cudaStream_t stream);
// y[r][c] += bias[c] for r < rows, c < cols.
void launch_add_bias(float* y, int64_t y_stride, int64_t rows, int64_t cols, const float* bias, cudaStream_t stream);

}  // namespace dendro::cuda
