// Weight-matrix products for the CPU backend: y[t] = W x[t] for a batch of token vectors, with W's rows
// stored as F32, F16, BF16 or Q8_0 and dequantized on the fly. Each output is accumulated in the canonical
// order of cpu_simd.h whatever the batch size, tiling or thread count, so one token computed alone gives
// bit-for-bit the result it gets inside a batch.
#pragma once

#include <cstdint>

#include "model.h"

namespace dendro::cpu {

// A batch of token vectors: row t of length `length` starts at data + t * stride.
struct ConstRows {
    const float* data;
    int64_t stride;
};
struct MutRows {
    float* data;
    int64_t stride;
};

// y[t][r] = dot(W row r, x[t]) for t < n_tokens and every row r of W; x rows have W.row_length() elements.
// Weight rows are split among n_threads OpenMP threads.
void matmul(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, int n_threads);

}  // namespace dendro::cpu
