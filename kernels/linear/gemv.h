// Matrix-vector products for decode (1 to kMaxGemvBatch activation rows): y[b] = W x[b] (+ bias), fp32
// activations and accumulation, weights streamed once from device memory whatever the batch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "weights/device_matrix.h"

namespace dendro::cuda {

inline constexpr int kMaxGemvBatch = 16;

// Optional work folded into a GEMV (decode of up to kMaxGemvBatch rows), so that a layer needs no separate
// residual-add + RMSNorm kernel: the out_proj GEMV adds into the residual stream and leaves each block's sums
// of squares of the rows it wrote; the next in_proj (or the lm_head) GEMV reads those to normalise its input as
// it loads it. Fixed summation orders throughout (no atomics).
struct GemvFusion {
    // RMSNorm folded into the load: x[b][k] is read as x[b][k] * norm_weight[k] and row b's sums are scaled by
    // 1/sqrt(sum_sq / w.cols + eps), sum_sq the sum over i < n_square_partials of
    // square_partials[i * n_batch + b] (a residual GEMV's residual_squares of the same batch).
    const float* norm_weight = nullptr;
    const float* square_partials = nullptr;
    int64_t n_square_partials = 0;
    float eps = 0.0f;
    // y += W x + bias (the residual add) instead of y = W x + bias.
    bool residual = false;
    // If set, block i writes the sums of squares of the y values it wrote, per batch row, at
    // residual_squares[i * n_batch + b]; gemv_blocks(w.rows, n_batch) blocks.
    float* residual_squares = nullptr;
};

// Blocks (and so partial sums of squares) of a GEMV of `rows` outputs for n_batch activation rows.
int64_t gemv_blocks(int64_t rows, int n_batch);

// x: n_batch rows of w.cols floats, x_stride apart; y: n_batch rows of w.rows floats, y_stride apart.
// bias (w.rows floats) may be null. All pointers are device pointers.
void launch_gemv(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int n_batch, float* y,
                 int64_t y_stride, cudaStream_t stream, const GemvFusion& fusion = {});

}  // namespace dendro::cuda
