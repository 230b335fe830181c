// Weight-matrix products for the CPU backend: y[t] = W x[t] for a batch of token vectors, with W's rows
// stored as F32, F16, BF16 (converted to fp32 on the fly), Q8_0, a legacy quant (Q4_0..Q5_1), IQ4_NL or a
// k-quant (Q2_K..Q6_K) (multiplied in integers with the tokens rounded to 8 bits, see quant_rows.h). Each
// output is accumulated in one fixed order whatever the batch size, tiling or thread count, so one token
// computed alone gives bit-for-bit the result it gets inside a batch.
#pragma once

#include <cstdint>

#include "common/function_ref.h"
#include "cpu/thread_pool.h"
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

// The thread's part of the team: which one it is and how many run the task.
struct Team {
    ThreadPool& pool;
    int thread;
    int n_threads;
};
// The part of [0, n) that thread `index` of `count` takes: contiguous, in multiples of `alignment`, as even
// as that allows (alignment 1 for heads and groups, of which there are few).
Range thread_share(int64_t n, int index, int count, int64_t alignment = kShareAlignment);

bool supported_matrix_type(GgmlType type);  // F32, F16, BF16, Q8_0, Q4_0..Q5_1, IQ4_NL, Q2_K..Q6_K

// y[t][r] = dot(W row r, x[t]) for t < n_tokens and rows row_begin <= r < row_end of W, on the calling thread
// (each thread of a pool takes its share of the rows); x rows have W.row_length() elements.
void matmul_rows(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, int64_t row_begin,
                 int64_t row_end);

// The same over all of W's rows, by every thread of the team together. With few tokens (decode steps)
// each thread claims chunks of rows from the pool as it becomes free, so that a thread slowed by the
// machine (its core taken for a while, an uneven share of the memory bus) computes fewer, rather than keep
// the others waiting at the next barrier (on a 2-vCPU VM the waits took 10-15 % of a Mamba-2 f32 decode
// step with fixed shares); larger batches take fixed shares (their token blocks keep the activations in
// cache while each thread streams its share of the weights). after(rows), where given, runs on the thread
// that computed those rows, once they are done. Fixed shares are taken of each of `parts` equal parts of
// the rows (Mamba-1's in_proj: its x and z halves, so that each thread has channels to convolve). A claim
// section of the pool: a barrier (or the task's end) must come before the team's next one.
void matmul_team_rows(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, const Team& team,
                      FunctionRef<void(Range)> after = {}, int64_t parts = 1);

}  // namespace dendro::cpu
