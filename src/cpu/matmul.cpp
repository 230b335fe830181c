// Tiled weight-matrix products over rows of every supported type (see cpu_matmul.h).
//
// A tile computes R weight rows against T token vectors with one 8-lane accumulator per (row, token),
// walking the row in order; the weights are converted to fp32 once and used for all T tokens. Because each
// output owns its accumulator and sees the same sequence of operations, its value does not depend on R, T
// or which thread computes it.
#include "cpu/matmul.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/quant_rows.h"
#include "cpu/simd.h"
#include "common/error.h"

namespace dendro::cpu {
namespace {

constexpr int64_t kChunksPerBlock = kQ8_0BlockSize / kLanes;
// Rows per tile when decoding a single token (memory bound: many rows in flight) and when batching tokens.
constexpr int kDecodeTileRows = 8;
constexpr int kBatchTileRows = 4;
constexpr int kBatchTileTokens = 3;
static_assert(kShareAlignment % kDecodeTileRows == 0 && kShareAlignment % kBatchTileRows == 0,
              "threads' shares must be whole tiles");
// Tokens whose activations are kept hot in cache while every thread streams its share of the weights.
constexpr int64_t kTokenBlock = 48;

// Readers of one F32, F16 or BF16 weight row: at() gives the 8 elements from `off` as fp32, partial() the
// last n < 8 followed by zeros.
struct F32Row {
    const float* p = nullptr;
    F32Row() = default;
    explicit F32Row(const uint8_t* row) : p(reinterpret_cast<const float*>(row)) {}
    F32x8 at(int64_t off) const { return load8(p + off); }
    F32x8 partial(int64_t off, int64_t n) const { return load8_partial(p + off, n); }
};

template <F32x8 (*Load)(const uint16_t*)>
struct Half16Row {
    const uint16_t* p = nullptr;
    Half16Row() = default;
    explicit Half16Row(const uint8_t* row) : p(reinterpret_cast<const uint16_t*>(row)) {}
    F32x8 at(int64_t off) const { return Load(p + off); }
    F32x8 partial(int64_t off, int64_t n) const {
        uint16_t padded[kLanes] = {};
        std::copy(p + off, p + off + n, padded);
        return Load(padded);
    }
};
using F16Row = Half16Row<load8_f16>;
using BF16Row = Half16Row<load8_bf16>;

// The tiles' loops over rows, tokens and chunks are unrolled so that the accumulators live in registers.

// Q8_0 rows are computed by tile_q8 (whole blocks only: the loader checks row lengths).
struct Q8Row {};

// R rows of a float type against T tokens: one accumulator per (row, token), chunks of 8 in order.
template <typename Row, int R, int T>
void tile(const uint8_t* const* row_ptrs, const float* const* x, int64_t length, float* const* y) {
    Row readers[R];
    F32x8 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        readers[r] = Row(row_ptrs[r]);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[r][t] = zero8();
    }
    int64_t off = 0;
    for (; off + kLanes <= length; off += kLanes) {
        F32x8 xs[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) xs[t] = load8(x[t] + off);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const F32x8 w = readers[r].at(off);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) acc[r][t] = fma8(w, xs[t], acc[r][t]);
        }
    }
    if (off < length) {
        const int64_t n = length - off;
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const F32x8 w = readers[r].partial(off, n);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) acc[r][t] = fma8(w, load8_partial(x[t] + off, n), acc[r][t]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) y[t][r] = hsum8(acc[r][t]);
    }
}

constexpr uintptr_t kCacheLine = 64;

// Asks for the cache lines of [p, p + n) ahead of use. p may lie past the matrix (the next tile of the last
// one): a prefetch never faults, so the address is computed as an integer.
inline void prefetch_bytes(uintptr_t p, uintptr_t n) {
    for (uintptr_t line = p & ~(kCacheLine - 1); line < p + n; line += kCacheLine) {
        __builtin_prefetch(reinterpret_cast<const void*>(line));
    }
}

// R Q8_0 rows against T tokens. Per block, the int8 quants (converted once for all tokens) are dotted with
// the token's 32 values in 4 chunks, and the block's scale is applied once to that partial sum:
// acc = fma(d, q·x, acc), blocks in order.
template <int R, int T>
void tile_q8(const uint8_t* const* row_ptrs, const float* const* x, int64_t length, float* const* y,
             size_t row_bytes) {
    F32x8 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[r][t] = zero8();
    }
    const int64_t n_blocks = length / kQ8_0BlockSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t off = b * kQ8_0BlockSize;
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const BlockQ8_0& block = reinterpret_cast<const BlockQ8_0*>(row_ptrs[r])[b];
            prefetch_bytes(reinterpret_cast<uintptr_t>(&block) + R * row_bytes, sizeof(BlockQ8_0));
            F32x8 q[kChunksPerBlock];
#pragma GCC unroll 4
            for (int64_t j = 0; j < kChunksPerBlock; ++j) q[j] = load8_i8(block.qs + j * kLanes);
            const F32x8 scale = broadcast8_f16(block.d);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
                F32x8 part = mul8(q[0], load8(x[t] + off));
#pragma GCC unroll 4
                for (int64_t j = 1; j < kChunksPerBlock; ++j) {
                    part = fma8(q[j], load8(x[t] + off + j * kLanes), part);
                }
                acc[r][t] = fma8(scale, part, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) y[t][r] = hsum8(acc[r][t]);
    }
}

// R rows of a legacy quant or k-quant against T tokens: each 8-element chunk is dequantized (exactly the
// reference values, see cpu_quant_rows.h) and fed into the accumulators in order, chunk by chunk through
// the blocks, so each output is the canonical dot product of its dequantized row with the token.
// Quantized rows cost more to compute than to load, so the hardware prefetcher does not run far enough
// ahead on its own: while reading block b of its rows, a tile prefetches block b of the next tile's rows
// (tile_q8 does the same).
template <typename Row, int R, int T>
void tile_blocks(const uint8_t* const* row_ptrs, const float* const* x, int64_t length, float* const* y,
                 size_t row_bytes) {
    constexpr uintptr_t kBlockBytes = sizeof(*Row().blocks);
    Row readers[R];
    F32x8 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        readers[r] = Row(row_ptrs[r]);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[r][t] = zero8();
    }
    const int64_t n_blocks = length / Row::kBlockSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            readers[r].begin_block(b);
            prefetch_bytes(reinterpret_cast<uintptr_t>(row_ptrs[r]) + R * row_bytes + b * kBlockBytes, kBlockBytes);
        }
        for (int g = 0; g < Row::kGroups; ++g) {
            const int64_t off = b * Row::kBlockSize + g * kGroupSize;
            F32x8 xs[T][kGroupChunks];
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
#pragma GCC unroll 4
                for (int i = 0; i < kGroupChunks; ++i) xs[t][i] = load8(x[t] + off + i * kLanes);
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                Group w;
                readers[r].group(g, w);
#pragma GCC unroll 4
                for (int i = 0; i < kGroupChunks; ++i) {
#pragma GCC unroll 16
                    for (int t = 0; t < T; ++t) acc[r][t] = fma8(w[i], xs[t][i], acc[r][t]);
                }
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) y[t][r] = hsum8(acc[r][t]);
    }
}

template <typename Row>
concept BlockReader = requires(Row row) { row.begin_block(int64_t{0}); };

[[noreturn]] void fail_unsupported_type(const TensorView& w) {
    fail("tensor ", w.name, ": type ", ggml_type_name(w.type), " is not supported by the CPU backend");
}

struct Problem {
    const TensorView& w;
    size_t row_bytes;
    ConstRows x;
    MutRows y;
};

template <typename Row, int R, int T>
void run_tile(const Problem& p, int64_t r0, int64_t t0) {
    const uint8_t* rows[R];
    for (int r = 0; r < R; ++r) rows[r] = p.w.data + static_cast<size_t>(r0 + r) * p.row_bytes;
    const float* x[T];
    float* y[T];
    for (int t = 0; t < T; ++t) {
        x[t] = p.x.data + (t0 + t) * p.x.stride;
        y[t] = p.y.data + (t0 + t) * p.y.stride + r0;
    }
    if constexpr (std::is_same_v<Row, Q8Row>) {
        tile_q8<R, T>(rows, x, p.w.row_length(), y, p.row_bytes);
    } else if constexpr (BlockReader<Row>) {
        tile_blocks<Row, R, T>(rows, x, p.w.row_length(), y, p.row_bytes);
    } else {
        tile<Row, R, T>(rows, x, p.w.row_length(), y);
    }
}

// Tokens [t_begin, t_end) against R rows starting at r0, T tokens at a time, then the leftover tokens.
template <typename Row, int R, int T>
void run_rows(const Problem& p, int64_t r0, int64_t t_begin, int64_t t_end) {
    int64_t t = t_begin;
    for (; t + T <= t_end; t += T) run_tile<Row, R, T>(p, r0, t);
    if constexpr (T > 1) {
        if (t < t_end) run_rows<Row, R, T - 1>(p, r0, t, t_end);
    }
}

// A tile of `rows` < R rows (the end of the matrix).
template <typename Row, int R, int T>
void run_short_rows(int64_t rows, const Problem& p, int64_t r0, int64_t t_begin, int64_t t_end) {
    if constexpr (R > 1) {
        if (rows == R - 1) {
            run_rows<Row, R - 1, T>(p, r0, t_begin, t_end);
        } else {
            run_short_rows<Row, R - 1, T>(rows, p, r0, t_begin, t_end);
        }
    }
}

// Rows [row_begin, row_end), R at a time, for every block of tokens.
template <typename Row, int R, int T>
void matmul_range(const Problem& p, int64_t n_tokens, int64_t row_begin, int64_t row_end) {
    for (int64_t tb = 0; tb < n_tokens; tb += kTokenBlock) {
        const int64_t tb_end = std::min(n_tokens, tb + kTokenBlock);
        for (int64_t r0 = row_begin; r0 < row_end; r0 += R) {
            const int64_t rows = std::min<int64_t>(R, row_end - r0);
            if (rows == R) {
                run_rows<Row, R, T>(p, r0, tb, tb_end);
            } else {
                run_short_rows<Row, R, T>(rows, p, r0, tb, tb_end);
            }
        }
    }
}

template <typename Row>
void matmul_typed(const Problem& p, int64_t n_tokens, int64_t row_begin, int64_t row_end) {
    if (n_tokens == 1) {
        matmul_range<Row, kDecodeTileRows, 1>(p, n_tokens, row_begin, row_end);
    } else {
        matmul_range<Row, kBatchTileRows, kBatchTileTokens>(p, n_tokens, row_begin, row_end);
    }
}

}  // namespace

Range thread_share(int64_t n, int index, int count, int64_t alignment) {
    const int64_t units = (n + alignment - 1) / alignment;
    const int64_t per_thread = units / count, extra = units % count;
    const int64_t begin = index * per_thread + std::min<int64_t>(index, extra);
    const int64_t end = begin + per_thread + (index < extra ? 1 : 0);
    return {std::min(n, begin * alignment), std::min(n, end * alignment)};
}

void matmul_rows(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, int64_t row_begin,
                 int64_t row_end) {
    if (n_tokens <= 0 || row_begin >= row_end) return;
    const Problem p{w, w.row_bytes(), x, y};
    switch (w.type) {
        case GgmlType::F32: return matmul_typed<F32Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::F16: return matmul_typed<F16Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::BF16: return matmul_typed<BF16Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q8_0: return matmul_typed<Q8Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q4_0: return matmul_typed<Q4_0Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q4_1: return matmul_typed<Q4_1Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q5_0: return matmul_typed<Q5_0Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q5_1: return matmul_typed<Q5_1Row>(p, n_tokens, row_begin, row_end);
        case GgmlType::IQ4_NL: return matmul_typed<IQ4_NLRow>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q2_K: return matmul_typed<Q2_KRow>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q3_K: return matmul_typed<Q3_KRow>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q4_K: return matmul_typed<Q4_KRow>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q5_K: return matmul_typed<Q5_KRow>(p, n_tokens, row_begin, row_end);
        case GgmlType::Q6_K: return matmul_typed<Q6_KRow>(p, n_tokens, row_begin, row_end);
        default: fail_unsupported_type(w);
    }
}

bool supported_matrix_type(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::IQ4_NL:
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K: return true;
        default: return false;
    }
}

}  // namespace dendro::cpu
