// Weight-matrix products for the CPU backend: y[t] = W x[t] for a batch of token vectors, with W's rows
// stored as F32, F16, BF16 (converted to fp32 on the fly), Q8_0, a legacy quant (Q4_0..Q5_1), IQ4_NL or a
// k-quant (Q2_K..Q6_K) (multiplied in integers with the tokens rounded to 8 bits, see quant_rows.h). Each
// output is accumulated in one fixed order whatever the batch size, tiling or thread count, so one token
// computed alone gives bit-for-bit the result it gets inside a batch.
#pragma once

#include <cstdint>

#include "model/model.h"

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

// Work is shared among threads in multiples of this many rows or channels (a whole number of tiles).
inline constexpr int64_t kShareAlignment = 8;

struct Range {
    int64_t begin, end;
};
// The part of [0, n) that thread `index` of `count` takes: contiguous, in multiples of `alignment`, as even
// as that allows (alignment 1 for heads and groups, of which there are few).
Range thread_share(int64_t n, int index, int count, int64_t alignment = kShareAlignment);

bool supported_matrix_type(GgmlType type);  // F32, F16, BF16, Q8_0, Q4_0..Q5_1, IQ4_NL, Q2_K..Q6_K

// y[t][r] = dot(W row r, x[t]) for t < n_tokens and rows row_begin <= r < row_end of W, on the calling thread
// (each thread of a pool takes its share of the rows); x rows have W.row_length() elements.
void matmul_rows(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, int64_t row_begin,
                 int64_t row_end);

}  // namespace dendro::cpu
