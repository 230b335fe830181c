// Tiled weight-matrix products over rows of every supported type (see cpu_matmul.h).
//
// A tile computes R weight rows against T token vectors with one accumulator per (row, token), walking the
// row in order; each weight chunk is decoded once (to fp32 for the float types, to bytes for the quantized
// types, whose tokens are quantized to 8 bits first: quant_rows.h) and used for all T tokens. Because each
// output owns its accumulator and sees the same sequence of operations, its value does not depend on R, T
// or which thread computes it.
#include "cpu/matmul.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/quant_rows.h"
#include "cpu/quantized_activations.h"
#include "cpu/simd.h"
#include "common/error.h"

namespace dendro::cpu {
namespace {

// Rows per tile when decoding a single token (memory bound: many rows in flight), and rows x tokens when
// batching. A float tile keeps R weight chunks in registers and streams each token's chunk past them; with
// R = 8 rows it runs at about twice the rate of R = 4 (measured, one Zen 4 core: 46 against 25 GMAC/s for
// F32), R + 1 loads per R * T FMAs, where the registers allow it. The quantized tiles with a row per
// accumulator (all of them without VNNI; Q2_K and Q3_K with it) spend their time decoding blocks, not
// loading, and spill at 8 rows (Q4_K: 31 against 57 GMAC/s), so they keep 4.
constexpr int kDecodeTileRows = 8;
constexpr int kFloatBatchTileRows = kVectorRegisters >= 32 ? 8 : 4;  // 8 rows x 3 (or 6, paired) tokens need 32 registers
constexpr int kQuantizedBatchTileRows = 4;
constexpr int kBatchTileTokens = 3;
#if defined(DENDRO_CPU_AVX512)
// The float batch tiles hold row pairs (tile_row_pairs): 4 pair registers x 6 tokens + 6 token chunks + 1
// row chunk = 31 registers. On an Intel Xeon (2 threads, pp512) 6 tokens gave m2 f16 prefill 1.35x and
// m1 f32 1.13x against the 8 x 3 single-row tile; 3 and 4 tokens gained less (1.09x, 1.22x at m2 f16).
constexpr int kFloatBatchTileTokens = 6;
#else
constexpr int kFloatBatchTileTokens = kBatchTileTokens;
#endif
// The VNNI tiles with rows in the lanes hold a block of 8 rows (8 registers) and an accumulator per token.
constexpr int kRowsInLanesTileTokens = 8;
static_assert(kShareAlignment % kDecodeTileRows == 0 && kShareAlignment % kFloatBatchTileRows == 0 &&
                  kShareAlignment % kQuantizedBatchTileRows == 0,
              "threads' shares must be whole tiles");
// Tokens whose activations are kept hot in cache while every thread streams its share of the weights.
constexpr int64_t kTokenBlock = 48;
// matmul_team_rows' chunks (GuidedChunks): the smallest, in bytes of weights (about 10 us at 12 GB/s, one
// core's share of a 2-vCPU VM's DRAM: the most time the threads are left apart at the barrier), and the
// divisor of the rows left per thread that sizes the larger ones.
constexpr size_t kClaimChunkBytes = 128 * 1024;
constexpr int64_t kGuidedDivisor = 2;

// Readers of one F32, F16 or BF16 weight row: at() gives the 8 elements from `off` as fp32, partial() the
// last n < 8 followed by zeros.
struct F32Row {
    static constexpr uintptr_t kElementBytes = sizeof(float);
    const float* p = nullptr;
    F32Row() = default;
    explicit F32Row(const uint8_t* row) : p(reinterpret_cast<const float*>(row)) {}
    F32x8 at(int64_t off) const { return load8(p + off); }
    F32x8 partial(int64_t off, int64_t n) const { return load8_partial(p + off, n); }
};

template <F32x8 (*Load)(const uint16_t*)>
struct Half16Row {
    static constexpr uintptr_t kElementBytes = sizeof(uint16_t);
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

// The weights are asked for into L2 (kPrefetchToL2, simd.h).
inline void prefetch_address(uintptr_t p) { prefetch_line<kPrefetchToL2>(p); }

// How far on a tile asks for rows: a whole number of tiles, at least kPrefetchAheadBytes (simd.h).
inline size_t prefetch_ahead(size_t tile_bytes) {
    return tile_bytes * std::max<size_t>(1, (kPrefetchAheadBytes + tile_bytes - 1) / tile_bytes);
}

// Block b of a row prefetched, blocks in sequence: a block no larger than a line needs only its first byte
// asked for, since every line of the row then holds the start of some block (and costs one instruction).
template <size_t kBlockBytes>
inline void prefetch_block(uintptr_t row, int64_t b) {
    const uintptr_t p = row + static_cast<uintptr_t>(b) * kBlockBytes;
    if constexpr (kBlockBytes <= kCacheLine) {
        prefetch_address(p);
    } else {
        prefetch_lines<kPrefetchToL2>(p, kBlockBytes);
    }
}

// R rows of a float type against T tokens: one accumulator per (row, token), chunks of 8 in order. While
// reading a chunk of its rows, a tile prefetches that chunk of the rows prefetch_ahead() on: the hardware
// prefetcher alone let F16 rows stream at half F32's rate (measured from DRAM, one thread: 9 GB/s against
// 16; with the prefetch 23 and 22).
template <typename Row, int R, int T>
void tile(const uint8_t* const* row_ptrs, const float* const* x, int64_t length, float* const* y, size_t row_bytes,
          bool prefetch) {
    const size_t ahead = prefetch_ahead(R * row_bytes);
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
        // The T token chunks held and each row's chunk used as it is loaded: R * T accumulators + T + 1
        // registers, where holding the R row chunks instead (R * T + R + 1: 33 for 8 x 3) spilled an
        // accumulator, whose store and reload every step held the F16 batch tile at ~80 % of the FMA rate.
        F32x8 xs[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) xs[t] = load8(x[t] + off);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            if (prefetch) prefetch_address(reinterpret_cast<uintptr_t>(row_ptrs[r]) + ahead + off * Row::kElementBytes);
            F32x8 w = readers[r].at(off);
            if constexpr (T > 1) keep_in_register(w);
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

#if defined(DENDRO_CPU_AVX512)
// Chunk `off` of two rows, one in each half.
inline F32x8Pair chunk_pair(const F32Row& low, const F32Row& high, int64_t off) { return load8_pair(low.p + off, high.p + off); }
inline F32x8Pair chunk_pair(const F16Row& low, const F16Row& high, int64_t off) {
    return load8_pair_f16(low.p + off, high.p + off);
}
inline F32x8Pair chunk_pair(const BF16Row& low, const BF16Row& high, int64_t off) {
    return load8_pair_bf16(low.p + off, high.p + off);
}

// tile() with rows 2i and 2i + 1 in the halves of one register (each token's chunk loaded into both): every
// accumulator sees tile()'s operations, so the outputs are the same bits, at up to twice the FMA rate.
template <typename Row, int R, int T>
void tile_row_pairs(const uint8_t* const* row_ptrs, const float* const* x, int64_t length, float* const* y,
                    size_t row_bytes, bool prefetch) {
    static_assert(R % 2 == 0);
    constexpr int P = R / 2;
    const size_t ahead = prefetch_ahead(R * row_bytes);
    Row readers[R];
    F32x8Pair acc[P][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) readers[r] = Row(row_ptrs[r]);
#pragma GCC unroll 16
    for (int i = 0; i < P; ++i) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[i][t] = zero8_pair();
    }
    int64_t off = 0;
    for (; off + kLanes <= length; off += kLanes) {
        F32x8Pair xs[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) xs[t] = load8_twice(x[t] + off);
#pragma GCC unroll 16
        for (int i = 0; i < P; ++i) {
            if (prefetch) {
                prefetch_address(reinterpret_cast<uintptr_t>(row_ptrs[2 * i]) + ahead + off * Row::kElementBytes);
                prefetch_address(reinterpret_cast<uintptr_t>(row_ptrs[2 * i + 1]) + ahead + off * Row::kElementBytes);
            }
            F32x8Pair w = chunk_pair(readers[2 * i], readers[2 * i + 1], off);
            if constexpr (T > 1) keep_in_register(w);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) acc[i][t] = fma8_pair(w, xs[t], acc[i][t]);
        }
    }
    if (off < length) {
        const int64_t n = length - off;
#pragma GCC unroll 16
        for (int i = 0; i < P; ++i) {
            const F32x8Pair w = pair8(readers[2 * i].partial(off, n), readers[2 * i + 1].partial(off, n));
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
                const F32x8 chunk = load8_partial(x[t] + off, n);
                acc[i][t] = fma8_pair(w, pair8(chunk, chunk), acc[i][t]);
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < P; ++i) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
            y[t][2 * i] = hsum8(low8(acc[i][t]));
            y[t][2 * i + 1] = hsum8(high8(acc[i][t]));
        }
    }
}
#endif

// R rows of a quantized type against T tokens' quantized activations: one Accumulator per (row, token),
// blocks in order (see quant_rows.h). The integer dots cost less than the fp32 conversions did but the rows
// still do not stream at the hardware prefetcher's pace on their own: while reading block b of its rows, a
// tile prefetches block b of the rows prefetch_ahead() on.
template <typename Row, int R, int T>
void tile_quantized(const uint8_t* const* row_ptrs, const typename Row::Activation* const* x, int64_t length,
                    float* const* y, size_t row_bytes, bool prefetch) {
    const size_t ahead = prefetch_ahead(R * row_bytes);
    Row readers[R];
    Accumulator acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) readers[r] = Row(row_ptrs[r]);
    const int64_t n_blocks = length / Row::kBlockSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
        const typename Row::Activation* a[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) a[t] = x[t] + b;
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            if (prefetch) prefetch_block<Row::kBlockBytes>(reinterpret_cast<uintptr_t>(row_ptrs[r]) + ahead, b);
            readers[r].template dot<T>(b, a, acc[r]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) y[t][r] = acc[r][t].total();
    }
}

template <typename Row>
concept QuantizedRow = requires { typename Row::Activation; };

#if defined(DENDRO_CPU_VNNI)
// The types of blocks of 32 that give their quants as unsigned bytes, or as packed nibbles (quant_rows.h).
template <typename Row>
concept PackedNibbleRow = requires(const Row& row) { row.packed_nibbles(int64_t{0}); };
template <typename Row>
concept UnsignedBlockRow = PackedNibbleRow<Row> || requires(const Row& row) { row.unsigned_block(int64_t{0}); };

// The first n_rows lanes of a rows-in-lanes accumulator: a token's outputs r0 .. r0 + n_rows - 1.
inline void store_lanes(float* y, F32x8 acc, int n_rows) {
    if (n_rows == kLanes) {
        store8(y, acc);
    } else {
        store8_partial(y, acc, n_rows);
    }
}

// The rows-in-lanes tiles read each block's fp16 scales (and mins) for their 8 rows in one gather: lane r
// is the 4 bytes at `offset` from row r, the tile's rows lying row_bytes apart (run_lanes_tile gives
// consecutive rows). Gathered 2 bytes at a time with scalar loads and inserts, they took Q4_1 decode from
// 32 to 19 GMAC/s on one core. The offsets are int32 (matmul_typed checks); the rows past n_rows are not
// read.
struct RowGather {
    __m256i row_offsets;
    __mmask8 present;
    RowGather(size_t row_bytes, int n_rows)
        : row_offsets(_mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int32_t>(row_bytes)))),
          present(static_cast<__mmask8>((1u << n_rows) - 1)) {}
    __m256i dwords(const uint8_t* first_row, size_t offset) const {
        return _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), present, row_offsets, first_row + offset, 1);
    }
};
// The fp16 in the low (high) 16 bits of each lane, as fp32.
inline F32x8 low_halves_f16(__m256i lanes) { return f16x8_to_f32(_mm256_cvtepi32_epi16(lanes)); }
inline F32x8 high_halves_f16(__m256i lanes) { return f16x8_to_f32(_mm256_cvtepi32_epi16(_mm256_srli_epi32(lanes, 16))); }

// With VNNI, a type of blocks of 32 with the rows in the lanes: block b of 8 rows is transposed into 8
// vectors of 4-byte groups (once, for all tokens), and each token's 32 bytes go in 4 at a time, broadcast,
// one dpbusd each. A token's row dots of the block come out in one vector, exact in integers (kOffset *
// sum(x) taken off), and are scaled and added in fp32 with one FMA, where the tile above spends a
// conversion and an FMA per row and 8 partial lanes per dot. The rows' d (and m) are their blocks' first 4
// bytes. An output's operations do not depend on n_rows, the tokens or its lane, so the results do not
// either. A null y[t] is a padding token whose outputs are not stored.

// Block b of n_rows <= 8 rows as unsigned bytes in 4-byte groups: lane r of groups[k] is row r's group k (a
// missing row reads zeros). Each row's block b `ahead` bytes on is prefetched.
template <typename Row>
[[gnu::always_inline]] inline void block_groups(const Row* readers, const uint8_t* const* row_ptrs, int n_rows, int64_t b,
                                                bool prefetch, size_t ahead, __m256i* groups) {
    if constexpr (PackedNibbleRow<Row>) {
        // Group k < 4 is the low nibbles of packed group k, group 4 + k its high nibbles.
        static constexpr uint8_t kNoRow[kLegacyQuantBlockSize / 2] = {};
        const uint8_t* packed[kLanes];
#pragma GCC unroll 8
        for (int r = 0; r < kLanes; ++r) {
            if (r < n_rows) {
                if (prefetch) prefetch_block<Row::kBlockBytes>(reinterpret_cast<uintptr_t>(row_ptrs[r]) + ahead, b);
                packed[r] = readers[r].packed_nibbles(b);
            } else {
                packed[r] = kNoRow;
            }
        }
        constexpr int kPackedGroups = kLanes / 2;
        const __m256i nibble_mask = _mm256_set1_epi8(static_cast<char>(kNibbleMask));
        transpose_groups8x4(packed, groups);
#pragma GCC unroll 4
        for (int k = 0; k < kPackedGroups; ++k) {
            groups[k + kPackedGroups] = Row::unsigned_from_nibbles({_mm256_and_si256(_mm256_srli_epi16(groups[k], kNibbleBits), nibble_mask)}).v;
            groups[k] = Row::unsigned_from_nibbles({_mm256_and_si256(groups[k], nibble_mask)}).v;
        }
    } else {
#pragma GCC unroll 8
        for (int r = 0; r < kLanes; ++r) {
            if (r < n_rows) {
                if (prefetch) prefetch_block<Row::kBlockBytes>(reinterpret_cast<uintptr_t>(row_ptrs[r]) + ahead, b);
                groups[r] = readers[r].unsigned_block(b).v;
            } else {
                groups[r] = _mm256_setzero_si256();
            }
        }
        transpose_groups8x8(groups);
    }
}

// One token, n_rows <= 8 rows.
template <typename Row, bool kFullTile>
[[gnu::noinline]] void tile_rows_in_lanes_one_token(const uint8_t* const* row_ptrs, int n_rows, const ActivationBlock32* const* x, int64_t length,
                                                    float* const* y, size_t row_bytes, bool prefetch) {
    if constexpr (kFullTile) n_rows = kLanes;  // a constant: the row checks fold away
    constexpr bool kHasMin = Row::kOffset == 0;  // Q4_1, Q5_1: values d * u + m
    constexpr int kGroupBytes = 4;
    Row readers[kLanes];
#pragma GCC unroll 8
    for (int r = 0; r < n_rows; ++r) readers[r] = Row(row_ptrs[r]);
    F32x8 acc = zero8();
    const RowGather gather(row_bytes, n_rows);
    const size_t ahead = prefetch_ahead(kLanes * row_bytes);
    const int64_t n_blocks = length / Row::kBlockSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
        __m256i groups[kLanes];
        block_groups(readers, row_ptrs, n_rows, b, prefetch, ahead, groups);
        // Lane r: row r's d in the low 16 bits, m (or the block's next bytes) in the high.
        const __m256i headers = gather.dwords(row_ptrs[0], b * Row::kBlockBytes);
        const ActivationBlock32& a = x[0][b];
        // Two chains (even and odd groups), so that the dpbusd latency overlaps.
        __m256i dots[2] = {_mm256_set1_epi32(-Row::kOffset * a.sum), _mm256_setzero_si256()};
#pragma GCC unroll 8
        for (int k = 0; k < kLanes; ++k) dots[k % 2] = add_dot_u8_broadcast_i8(dots[k % 2], groups[k], a.q + kGroupBytes * k);
        const __m256i dot = _mm256_add_epi32(dots[0], dots[1]);
        acc = fma8(mul8(low_halves_f16(headers), broadcast8(a.d)), to_f32(I32x8{dot}), acc);
        if constexpr (kHasMin) acc = fma8(high_halves_f16(headers), broadcast8(a.scaled_sum), acc);
    }
    store_lanes(y[0], acc, n_rows);
}

// Up to 16 rows' d and m (a block's first 4 bytes, the rows row_bytes apart) in one gather at int32 offsets
// (matmul_typed checks), for the 512-bit batch tiles.
inline constexpr int kWideLanes = 2 * kLanes;
struct WideRowGather {
    __m512i row_offsets;
    __mmask16 present;
    WideRowGather(size_t row_bytes, int n_rows)
        : row_offsets(_mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int32_t>(row_bytes)))),
          present(static_cast<__mmask16>((1u << n_rows) - 1)) {}
    __m512i dwords(const uint8_t* first_row, size_t offset) const {
        return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, row_offsets, first_row + offset, 1);
    }
};
inline __m512 low_halves_f16(__m512i lanes) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(lanes)); }
inline __m512 high_halves_f16(__m512i lanes) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(lanes, 16))); }
inline void store_lanes(float* y, __m512 acc, __mmask16 present) { _mm512_mask_storeu_ps(y, present, acc); }

// A batch of T tokens, up to 16 rows in the lanes of 512-bit vectors (the groups of rows 0-7 and 8-15
// joined), so that each broadcast token group and dpbusd serves 16 rows; the tokens' dots run group by
// group (a token's 8 dpbusd depend on each other). The same integers and fp32 operations per output as the
// one-token tile.
template <typename Row, int T>
[[gnu::noinline]] void tile_rows_in_lanes_batch(const uint8_t* const* row_ptrs, int n_rows, const ActivationBlock32* const* x, int64_t length,
                                                float* const* y, size_t row_bytes, bool prefetch) {
    constexpr bool kHasMin = Row::kOffset == 0;
    constexpr int kGroupBytes = 4;
    const size_t ahead = prefetch_ahead(kWideLanes * row_bytes);
    Row readers[kWideLanes];
    for (int r = 0; r < n_rows; ++r) readers[r] = Row(row_ptrs[r]);
    __m512 acc[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    const WideRowGather gather(row_bytes, n_rows);
    const int64_t n_blocks = length / Row::kBlockSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
        __m256i halves[2][kLanes];
        block_groups(readers, row_ptrs, std::min(n_rows, kLanes), b, prefetch, ahead, halves[0]);
        block_groups(readers + kLanes, row_ptrs + kLanes, n_rows - kLanes, b, prefetch, ahead, halves[1]);
        __m512i groups[kLanes];
#pragma GCC unroll 8
        for (int k = 0; k < kLanes; ++k) groups[k] = wide_from_halves(halves[0][k], halves[1][k]);
        const __m512i headers = gather.dwords(row_ptrs[0], b * Row::kBlockBytes);
        const __m512 row_scales = low_halves_f16(headers);
        __m512i dots[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) dots[t] = _mm512_set1_epi32(-Row::kOffset * x[t][b].sum);
#pragma GCC unroll 8
        for (int k = 0; k < kLanes; ++k) {
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
                int32_t group;
                std::memcpy(&group, x[t][b].q + kGroupBytes * k, sizeof(group));
                dots[t] = _mm512_dpbusd_epi32(dots[t], groups[k], _mm512_set1_epi32(group));
            }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
            const ActivationBlock32& a = x[t][b];
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(row_scales, _mm512_set1_ps(a.d)), _mm512_cvtepi32_ps(dots[t]), acc[t]);
            if constexpr (kHasMin) acc[t] = _mm512_fmadd_ps(high_halves_f16(headers), _mm512_set1_ps(a.scaled_sum), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        if (y[t] != nullptr) store_lanes(y[t], acc[t], gather.present);
    }
}

// Q4_K and Q5_K, one token, 8 rows in the lanes per super-block of 256: each row's two exact integer dots as
// its row type forms them (sum_j scale_j (q_j . x_j) and sum_j min_j sum(x_j) over its sub-blocks j of 32,
// in 8 partial lanes), their lanes summed into a vector, scaled in fp32 with one FMA each.
template <typename Row, bool kFullTile>
[[gnu::noinline]] void tile_k_quant_one_token(const uint8_t* const* row_ptrs, int n_rows, const ActivationBlock256* const* x, int64_t length,
                                              float* const* y, size_t row_bytes, bool prefetch) {
    if constexpr (kFullTile) n_rows = kLanes;  // a constant: the row checks fold away
    using Block = typename Row::BlockType;
    static_assert(offsetof(Block, d) == 0 && offsetof(Block, dmin) == sizeof(uint16_t));
    const RowGather gather(row_bytes, n_rows);  // d and dmin: a super-block's first 4 bytes
    const size_t ahead = prefetch_ahead(kLanes * row_bytes);
    const int64_t n_blocks = length / kKQuantBlockSize;
    F32x8 acc = zero8();
    for (int64_t b = 0; b < n_blocks; ++b) {
        const WideActivation256 wide_x(x[0][b]);
        I32x8 scaled[kLanes], mins[kLanes];
#pragma GCC unroll 8
        for (int r = 0; r < kLanes; ++r) {
            if (r < n_rows) {
                if (prefetch) prefetch_block<sizeof(Block)>(reinterpret_cast<uintptr_t>(row_ptrs[r]) + ahead, b);
                Row(row_ptrs[r]).integer_dots(b, wide_x, &scaled[r], &mins[r]);
            } else {
                scaled[r] = mins[r] = zero8_i32();
            }
        }
        const __m256i headers = gather.dwords(row_ptrs[0], b * sizeof(Block));
        const F32x8 dx = broadcast8(x[0][b].d);
        acc = fma8(mul8(low_halves_f16(headers), dx), to_f32(I32x8{lane_totals8(scaled)}), acc);
        acc = fma8(mul8(sub8(zero8(), high_halves_f16(headers)), dx), to_f32(I32x8{lane_totals8(mins)}), acc);
    }
    store_lanes(y[0], acc, n_rows);
}

// Q4_K and Q5_K batches, up to 16 rows in the lanes of 512-bit vectors against T tokens, per super-block:
// the rows' 6-bit scales (as int32) and mins (as int16 pairs) transposed into a vector per sub-block (pair),
// each 32 bytes of quants (sub-block 2c in the low nibbles, 2c + 1 in the high) transposed into 4-byte
// groups once and their nibbles split after the transpose (which moves whole groups), and so Q5_K's fifth
// bits (bit j of qh for sub-block j); each token's 4 bytes then go in broadcast, one dpbusd per group for 16
// rows. With 8 rows in 256-bit lanes the tile ran at ~3 instructions a cycle with half of them the
// broadcasts and dpbusd, which here serve twice the rows (Zen 4 runs a 512-bit dpbusd at half the rate, the
// same products a cycle). A token's integers sum_j scale_j (q_j . x_j) and sum_j min_j sum(x_j) are those of
// the one-token tile, scaled with the same two fp32 FMAs, so the outputs are too.
template <typename Row, int T>
[[gnu::noinline]] void tile_k_quant_batch(const uint8_t* const* row_ptrs, int n_rows, const ActivationBlock256* const* x, int64_t length,
                                          float* const* y, size_t row_bytes, bool prefetch) {
    using Block = typename Row::BlockType;
    static_assert(offsetof(Block, d) == 0 && offsetof(Block, dmin) == sizeof(uint16_t));
    constexpr int kGroupBytes = 4, kChunks = kGroups / 2, kMinPairs = kGroups / 2;
    const Block* blocks[kWideLanes] = {};
    for (int r = 0; r < n_rows; ++r) blocks[r] = reinterpret_cast<const Block*>(row_ptrs[r]);
    const WideRowGather gather(row_bytes, n_rows);  // d and dmin: a super-block's first 4 bytes
    const size_t ahead = prefetch_ahead(kWideLanes * row_bytes);
    const __m512i nibble_mask = _mm512_set1_epi8(static_cast<char>(kNibbleMask));
    __m512 acc[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    const int64_t n_blocks = length / kKQuantBlockSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
        __m512i scales[kGroups], min_pairs[kMinPairs];
        {
            __m256i half_scales[2][kLanes], half_mins[2][kMinPairs];
#pragma GCC unroll 2
            for (int h = 0; h < 2; ++h) {
                __m128i row_mins[kLanes];  // row 8h + r's 8 mins as int16
#pragma GCC unroll 8
                for (int r = 0; r < kLanes; ++r) {
                    const int row = kLanes * h + r;
                    if (row < n_rows) {
                        if (prefetch) prefetch_block<sizeof(Block)>(reinterpret_cast<uintptr_t>(row_ptrs[row]) + ahead, b);
                        const __m128i scales_mins = k_quant_scales_mins_vector(blocks[row][b].scales);
                        half_scales[h][r] = _mm256_cvtepu8_epi32(scales_mins);
                        row_mins[r] = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scales_mins, scales_mins));
                    } else {
                        half_scales[h][r] = _mm256_setzero_si256();
                        row_mins[r] = _mm_setzero_si128();
                    }
                }
                transpose_groups8x8(half_scales[h]);  // lane r: row 8h + r's scale of sub-block j
                transpose_groups8x4(row_mins, half_mins[h]);  // lane r: row 8h + r's mins 2i, 2i + 1
            }
#pragma GCC unroll 8
            for (int j = 0; j < kGroups; ++j) scales[j] = wide_from_halves(half_scales[0][j], half_scales[1][j]);
#pragma GCC unroll 4
            for (int i = 0; i < kMinPairs; ++i) min_pairs[i] = wide_from_halves(half_mins[0][i], half_mins[1][i]);
        }
        // 32 bytes of each row from `offset` in its block b, as 4-byte groups: lane r of out[k] is row r's group
        // k (rows 0-7 and 8-15 transposed as halves). A missing row reads zeros.
        const auto transposed = [&](size_t offset, __m512i* out) {
            __m256i halves[2][kLanes];
#pragma GCC unroll 2
            for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 8
                for (int r = 0; r < kLanes; ++r) {
                    const int row = kLanes * h + r;
                    halves[h][r] = row < n_rows ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint8_t*>(&blocks[row][b]) + offset))
                                                : _mm256_setzero_si256();
                }
                transpose_groups8x8(halves[h]);
            }
#pragma GCC unroll 8
            for (int k = 0; k < kLanes; ++k) out[k] = wide_from_halves(halves[0][k], halves[1][k]);
        };
        [[maybe_unused]] __m512i fifth_bits[kLanes];
        if constexpr (Row::kHasFifthBit) transposed(offsetof(Block, qh), fifth_bits);
        __m512i sums[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) sums[t] = _mm512_setzero_si512();
        for (int c = 0; c < kChunks; ++c) {
            __m512i packed[kLanes];
            transposed(offsetof(Block, qs) + kKQuantHalfBytes * c, packed);
#pragma GCC unroll 2
            for (int half = 0; half < 2; ++half) {
                const int sub_block = 2 * c + half;  // the low nibbles, then the high
                __m512i quants[kLanes];
#pragma GCC unroll 8
                for (int k = 0; k < kLanes; ++k) {
                    quants[k] = _mm512_and_si512(half == 0 ? packed[k] : _mm512_srli_epi16(packed[k], kNibbleBits), nibble_mask);
                    if constexpr (Row::kHasFifthBit) {
                        const __m512i bit = _mm512_set1_epi8(static_cast<char>(1u << sub_block));
                        quants[k] = _mm512_mask_add_epi8(quants[k], _mm512_test_epi8_mask(fifth_bits[k], bit), quants[k],
                                                         _mm512_set1_epi8(static_cast<char>(1u << kNibbleBits)));  // bit 4 is clear
                    }
                }
                // The tokens' dots interleaved group by group: a token's 8 dpbusd depend on each other, and
                // taken token by token their latency left the tile at half its rate.
                __m512i dots[T];
#pragma GCC unroll 16
                for (int t = 0; t < T; ++t) dots[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int k = 0; k < kLanes; ++k) {
#pragma GCC unroll 16
                    for (int t = 0; t < T; ++t) {
                        int32_t group;
                        std::memcpy(&group, x[t][b].q + sub_block * kLegacyQuantBlockSize + kGroupBytes * k, sizeof(group));
                        dots[t] = _mm512_dpbusd_epi32(dots[t], quants[k], _mm512_set1_epi32(group));
                    }
                }
#pragma GCC unroll 16
                for (int t = 0; t < T; ++t) sums[t] = _mm512_add_epi32(sums[t], _mm512_mullo_epi32(dots[t], scales[sub_block]));
            }
        }
        const __m512i headers = gather.dwords(row_ptrs[0], b * sizeof(Block));
        const __m512 row_d = low_halves_f16(headers), row_minus_dmin = _mm512_sub_ps(_mm512_setzero_ps(), high_halves_f16(headers));
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
            const ActivationBlock256& a = x[t][b];
            __m512i min_sums = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int i = 0; i < kMinPairs; ++i) {
                int32_t sum_pair;
                std::memcpy(&sum_pair, a.sums32 + 2 * i, sizeof(sum_pair));
                min_sums = _mm512_dpwssd_epi32(min_sums, min_pairs[i], _mm512_set1_epi32(sum_pair));
            }
            const __m512 dx = _mm512_set1_ps(a.d);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(row_d, dx), _mm512_cvtepi32_ps(sums[t]), acc[t]);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(row_minus_dmin, dx), _mm512_cvtepi32_ps(min_sums), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        if (y[t] != nullptr) store_lanes(y[t], acc[t], gather.present);
    }
}

// Q6_K, 8 rows in 256-bit lanes for one token and for batches: its 16 int8 scales widened and transposed
// into a vector per sub-block of 16 (and, for the offsets, into int16 pairs of adjacent sub-blocks), each
// 32 bytes of low bits (two sub-blocks of 32: low and high nibbles) and of high bits (four: 2 bits each)
// transposed once; a token's dot is per row the exact sum_s scale_s ((q_s - 32) . x_s), scaled in fp32 with
// one FMA. One token takes each row's integer dot as Q6_KRow forms it, its lanes summed.
inline constexpr size_t kQ6KScaleBefore = offsetof(BlockQ6_K, d) - sizeof(uint16_t);
static_assert(offsetof(BlockQ6_K, d) + sizeof(uint16_t) == sizeof(BlockQ6_K));
template <int T, bool kFullTile>
[[gnu::noinline]] void tile_q6_k_rows_in_lanes(const uint8_t* const* row_ptrs, int n_rows, const ActivationBlock256* const* x, int64_t length,
                             float* const* y, size_t row_bytes, bool prefetch) {
    if constexpr (kFullTile) n_rows = kLanes;  // a constant: the row checks fold away
    constexpr int kGroupBytes = 4, kHalfGroups = kLanes / 2;
    const BlockQ6_K* blocks[kLanes] = {};
#pragma GCC unroll 8
    for (int r = 0; r < n_rows; ++r) blocks[r] = reinterpret_cast<const BlockQ6_K*>(row_ptrs[r]);
    F32x8 acc[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t] = zero8();
    const int64_t n_blocks = length / kKQuantBlockSize;
    const RowGather gather(row_bytes, n_rows);
    const size_t ahead = prefetch_ahead(kLanes * row_bytes);
    for (int64_t b = 0; b < n_blocks; ++b) {
#pragma GCC unroll 8
        for (int r = 0; r < n_rows; ++r) {
            if (prefetch) prefetch_block<sizeof(BlockQ6_K)>(reinterpret_cast<uintptr_t>(row_ptrs[r]) + ahead, b);
        }
        // d is the super-block's last 2 bytes: the 4 from 2 before it, high halves.
        const F32x8 row_d = high_halves_f16(gather.dwords(row_ptrs[0], b * sizeof(BlockQ6_K) + kQ6KScaleBefore));
        __m256i totals[T];
        if constexpr (T == 1) {
            I32x8 per_row[kLanes];
#pragma GCC unroll 8
            for (int r = 0; r < kLanes; ++r) {
                if (r < n_rows) {
                    Q6_KRow(row_ptrs[r]).integer_dot(b, &x[0][b], &per_row[r]);
                } else {
                    per_row[r] = zero8_i32();
                }
            }
            totals[0] = lane_totals8(per_row);
        } else {
            __m256i scales[kSubBlocks];  // scales[s] lane r: row r's scale of sub-block s
#pragma GCC unroll 8
            for (int r = 0; r < kLanes; ++r) {
                for (int half = 0; half < 2; ++half) {
                    scales[half * kLanes + r] =
                        r < n_rows ? _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blocks[r][b].scales + half * kLanes)))
                              : _mm256_setzero_si256();
                }
            }
            transpose_groups8x8(scales);
            transpose_groups8x8(scales + kLanes);
            // And as int16 pairs for the offsets: scale_pairs[i] lane r holds row r's scales 2i and 2i + 1.
            __m256i scale_pairs[kLanes];
#pragma GCC unroll 8
            for (int r = 0; r < kLanes; ++r) {
                scale_pairs[r] = r < n_rows ? _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks[r][b].scales)))
                                            : _mm256_setzero_si256();
            }
            transpose_groups8x8(scale_pairs);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) totals[t] = _mm256_setzero_si256();
            for (int h = 0; h < 2; ++h) {
                __m256i high_bits[kLanes];
#pragma GCC unroll 8
                for (int r = 0; r < kLanes; ++r) {
                    high_bits[r] = r < n_rows ? load32_u8(blocks[r][b].qh + kKQuantHalfBytes * h).v : _mm256_setzero_si256();
                }
                transpose_groups8x8(high_bits);
                for (int odd = 0; odd < 2; ++odd) {
                    __m256i low_bits[kLanes];
#pragma GCC unroll 8
                    for (int r = 0; r < kLanes; ++r) {
                        low_bits[r] = r < n_rows ? load32_u8(blocks[r][b].ql + kQ6KQlHalfBytes * h + kQ6KQlQuarterBytes * odd).v
                                            : _mm256_setzero_si256();
                    }
                    transpose_groups8x8(low_bits);
                    for (int j = odd; j < kQuartersPerHalf; j += 2) {  // quarter j: nibbles j >= 2 high, bits 2j
                        const int g = kQuartersPerHalf * h + j;
                        __m256i quants[kLanes];
#pragma GCC unroll 8
                        for (int k = 0; k < kLanes; ++k) {
                            const U8x32 low = bits32_u8({low_bits[k]}, j >= 2 ? kNibbleBits : 0, kNibbleMask);
                            quants[k] = or32_u8(low, move_bits32_u8({high_bits[k]}, 2 * j, kNibbleBits, kTwoBitMask)).v;
                        }
#pragma GCC unroll 16
                        for (int t = 0; t < T; ++t) {
                            const int8_t* xq = x[t][b].q + g * kLegacyQuantBlockSize;
                            __m256i first = _mm256_setzero_si256(), second = _mm256_setzero_si256();
#pragma GCC unroll 4
                            for (int k = 0; k < kHalfGroups; ++k) {
                                first = add_dot_u8_broadcast_i8(first, quants[k], xq + kGroupBytes * k);
                                second = add_dot_u8_broadcast_i8(second, quants[k + kHalfGroups], xq + kGroupBytes * (k + kHalfGroups));
                            }
                            totals[t] = _mm256_add_epi32(totals[t], _mm256_add_epi32(_mm256_mullo_epi32(first, scales[2 * g]),
                                                                                     _mm256_mullo_epi32(second, scales[2 * g + 1])));
                        }
                    }
                }
            }
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
                // sum_s scale_s sum(x_s), two sub-blocks per dpwssd (a multiply and an add per sub-block before).
                __m256i offsets = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int i = 0; i < kLanes; ++i) {
                    int32_t sum_pair;
                    std::memcpy(&sum_pair, x[t][b].sums + 2 * i, sizeof(sum_pair));
                    offsets = add_dot_i16(offsets, scale_pairs[i], _mm256_set1_epi32(sum_pair));
                }
                totals[t] = sub_shifted8_i32({totals[t]}, {offsets}, kQ6KOffsetBits).v;
            }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[t] = fma8(mul8(row_d, broadcast8(x[t][b].d)), to_f32(I32x8{totals[t]}), acc[t]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        if (y[t] != nullptr) store_lanes(y[t], acc[t], n_rows);
    }
}

// The quantized types with a rows-in-lanes tile.
template <typename Row>
concept RowsInLanes =
    UnsignedBlockRow<Row> || std::is_same_v<Row, Q4_KRow> || std::is_same_v<Row, Q5_KRow> || std::is_same_v<Row, Q6_KRow>;
#endif

[[noreturn]] void fail_unsupported_type(const TensorView& w) {
    fail("tensor ", w.name, ": type ", ggml_type_name(w.type), " is not supported by the CPU backend");
}

// x and y rows of tokens [0, n); for a quantized type, `activations` holds the quantized x of tokens
// [activations_begin, ...), blocks_per_token blocks each.
struct Problem {
    const TensorView& w;
    size_t row_bytes;
    ConstRows x;
    MutRows y;
    const void* activations = nullptr;
    int64_t activations_begin = 0, blocks_per_token = 0;
    int64_t prefetch_at_token = 0;
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
    if constexpr (QuantizedRow<Row>) {
        using Activation = typename Row::Activation;
        const Activation* a[T];
        for (int t = 0; t < T; ++t) {
            a[t] = static_cast<const Activation*>(p.activations) + (t0 + t - p.activations_begin) * p.blocks_per_token;
        }
        tile_quantized<Row, R, T>(rows, a, p.w.row_length(), y, p.row_bytes, t0 == p.prefetch_at_token);
    } else {
#if defined(DENDRO_CPU_AVX512)
        // Not for decoding, which is memory bound: one token's pairs took F16 and BF16 decode 5 % slower.
        if constexpr (R % 2 == 0 && T > 1) return tile_row_pairs<Row, R, T>(rows, x, p.w.row_length(), y, p.row_bytes, t0 == p.prefetch_at_token);
#endif
        tile<Row, R, T>(rows, x, p.w.row_length(), y, p.row_bytes, t0 == p.prefetch_at_token);
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
// Quantizes the activations of tokens [tb, tb_end) into this thread's scratch, reused from call to call.
// Every thread quantizes the tokens it needs itself: a token's activations cost about one weight row's
// work, against the hundreds of rows a thread computes with them.
template <typename Row>
void quantize_token_block(Problem& p, int64_t tb, int64_t tb_end) {
    using Activation = typename Row::Activation;
    thread_local std::vector<Activation> scratch;
    const int64_t length = p.w.row_length();
    p.blocks_per_token = length / Row::kBlockSize;
    scratch.resize(static_cast<size_t>((tb_end - tb) * p.blocks_per_token));
    for (int64_t t = tb; t < tb_end; ++t) {
        quantize_activations(p.x.data + t * p.x.stride, length, scratch.data() + (t - tb) * p.blocks_per_token);
    }
    p.activations = scratch.data();
    p.activations_begin = tb;
}

// A product's rows as the team claims them: chunks shrinking from about 1 / (kGuidedDivisor * threads) of
// the rows left down to kClaimChunkBytes of weights, whole tiles each. Few large chunks first, since each
// chunk's first tile reads without the prefetch a previous tile of the same thread would have issued
// (fixed chunks of 128 KiB made Mamba-2 f32 decode 15 % slower than fixed shares; of 1 MiB, 3-7 % faster);
// small ones last, so that the threads finish close together. The chunks are a function of the rows, the
// row size and the team's size alone: every thread knows chunk c's rows.
struct GuidedChunks {
    int64_t n_rows, min_rows, divisor;
    GuidedChunks(int64_t rows, size_t row_bytes, int n_threads)
        : n_rows(rows),
          min_rows(std::max<int64_t>(kShareAlignment, static_cast<int64_t>(kClaimChunkBytes / std::max<size_t>(1, row_bytes)) /
                                                          kShareAlignment * kShareAlignment)),
          divisor(kGuidedDivisor * n_threads) {}
    int64_t end_after(int64_t begin) const {
        const int64_t share = (n_rows - begin + divisor - 1) / divisor;
        const int64_t rows = std::max(min_rows, (share + kShareAlignment - 1) / kShareAlignment * kShareAlignment);
        return std::min(n_rows, begin + rows);
    }
    int64_t count() const {
        int64_t n = 0;
        for (int64_t begin = 0; begin < n_rows; begin = end_after(begin)) ++n;
        return n;
    }
};

// The rows one thread computes in a product: a fixed range, or chunks it claims from its team (then the
// tokens are one token block: each chunk reuses the block's activations).
struct RowWork {
    Range fixed{0, 0};
    const Team* team = nullptr;  // set: claim chunks of `guided`
    const GuidedChunks* guided = nullptr;
    FunctionRef<void(Range)> after = {};

    template <typename Rows>
    void for_each(Rows&& rows) const {
        if (team == nullptr) {
            if (fixed.begin < fixed.end) rows(fixed);
            return;
        }
        const int64_t n_chunks = guided->count();
        Range chunk{0, guided->end_after(0)};  // chunk `index`: this thread's claims only grow
        int64_t index = 0;
        for (int64_t c = team->pool.claim(team->thread, n_chunks); c >= 0; c = team->pool.claim(team->thread, n_chunks)) {
            for (; index < c; ++index) chunk = {chunk.end, guided->end_after(chunk.end)};
            rows(chunk);
            if (after) after(chunk);
        }
    }
};

// Token block after token block (its tokens quantized once, for the quantized types), the rows of `work`.
template <typename Row, typename TokenBlockRows>
void for_token_blocks(Problem& p, int64_t n_tokens, const RowWork& work, TokenBlockRows&& rows) {
    for (int64_t tb = 0; tb < n_tokens; tb += kTokenBlock) {
        const int64_t tb_end = std::min(n_tokens, tb + kTokenBlock);
        if constexpr (QuantizedRow<Row>) quantize_token_block<Row>(p, tb, tb_end);
        p.prefetch_at_token = tb;
        work.for_each([&](Range r) { rows(tb, tb_end, r.begin, r.end); });
    }
}

template <typename Row, int R, int T>
void matmul_range(Problem& p, int64_t n_tokens, const RowWork& work) {
    for_token_blocks<Row>(p, n_tokens, work, [&](int64_t tb, int64_t tb_end, int64_t row_begin, int64_t row_end) {
        for (int64_t r0 = row_begin; r0 < row_end; r0 += R) {
            const int64_t rows = std::min<int64_t>(R, row_end - r0);
            if (rows == R) {
                run_rows<Row, R, T>(p, r0, tb, tb_end);
            } else {
                run_short_rows<Row, R, T>(rows, p, r0, tb, tb_end);
            }
        }
    });
}

#if defined(DENDRO_CPU_VNNI)
// The types whose batches take 16 rows a tile (all but Q6_K).
template <typename Row>
concept WideBatchRow = UnsignedBlockRow<Row> || std::is_same_v<Row, Q4_KRow> || std::is_same_v<Row, Q5_KRow>;

// The rows-in-lanes types: tiles of 8 rows for one token (16 for a batch of the WideBatchRow types) or, at
// the end of a share, fewer (a run-time count; the lanes past it are zero), and of 1 or 8 tokens, a
// shorter batch padded with its first token, whose extra outputs are not stored. Three tile instantiations
// per type (one token with 8 constant rows, one token, 8 tokens), where a template row and token count
// each would make 64 (and took a sanitizer build over 15 minutes to compile). The tiles are not inlined
// into this loop: inlined, the compiler stopped inlining their own helpers (measured: Q6_K decode 27 -> 19
// GMAC/s on one core).

template <typename Row, int T>
void run_lanes_tile(const Problem& p, int64_t r0, int n_rows, int64_t t0, int n_tokens) {
    using Activation = typename Row::Activation;
    const uint8_t* rows[kWideLanes] = {};
    for (int r = 0; r < n_rows; ++r) rows[r] = p.w.data + static_cast<size_t>(r0 + r) * p.row_bytes;
    const Activation* a[T];
    float* y[T];
    for (int t = 0; t < T; ++t) {
        const int64_t token = t0 + (t < n_tokens ? t : 0);
        a[t] = static_cast<const Activation*>(p.activations) + (token - p.activations_begin) * p.blocks_per_token;
        y[t] = t < n_tokens ? p.y.data + (t0 + t) * p.y.stride + r0 : nullptr;
    }
    const bool prefetch = t0 == p.prefetch_at_token;
    const auto run = [&]<bool kFullTile>() {
        if constexpr (UnsignedBlockRow<Row> && T == 1) {
            tile_rows_in_lanes_one_token<Row, kFullTile>(rows, n_rows, a, p.w.row_length(), y, p.row_bytes, prefetch);
        } else if constexpr (UnsignedBlockRow<Row>) {
            tile_rows_in_lanes_batch<Row, T>(rows, n_rows, a, p.w.row_length(), y, p.row_bytes, prefetch);
        } else if constexpr (std::is_same_v<Row, Q6_KRow>) {
            tile_q6_k_rows_in_lanes<T, kFullTile>(rows, n_rows, a, p.w.row_length(), y, p.row_bytes, prefetch);
        } else if constexpr (T == 1) {
            tile_k_quant_one_token<Row, kFullTile>(rows, n_rows, a, p.w.row_length(), y, p.row_bytes, prefetch);
        } else {
            tile_k_quant_batch<Row, T>(rows, n_rows, a, p.w.row_length(), y, p.row_bytes, prefetch);
        }
    };
    // Decoding, whose per-block work is small, takes a tile of 8 constant rows where it can.
    if (T == 1 && n_rows == kLanes) {
        run.template operator()<T == 1>();
    } else {
        run.template operator()<false>();
    }
}

template <typename Row>
void matmul_rows_in_lanes(Problem& p, int64_t n_tokens, const RowWork& work) {
    for_token_blocks<Row>(p, n_tokens, work, [&](int64_t tb, int64_t tb_end, int64_t row_begin, int64_t row_end) {
        // Batches take 16 rows a tile (but Q6_K's), a single token 8.
        const int tile_rows = WideBatchRow<Row> && tb_end - tb > 1 ? kWideLanes : kLanes;
        for (int64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
            const int n_rows = static_cast<int>(std::min<int64_t>(tile_rows, row_end - r0));
            for (int64_t t0 = tb; t0 < tb_end; t0 += kRowsInLanesTileTokens) {
                const int count = static_cast<int>(std::min<int64_t>(kRowsInLanesTileTokens, tb_end - t0));
                if (count == 1) {
                    for (int r = 0; r < n_rows; r += kLanes) run_lanes_tile<Row, 1>(p, r0 + r, std::min(kLanes, n_rows - r), t0, 1);
                } else {
                    run_lanes_tile<Row, kRowsInLanesTileTokens>(p, r0, n_rows, t0, count);
                }
            }
        }
    });
}
#endif

// The other types (and all without VNNI): a row per accumulator.
template <typename Row>
void matmul_row_tiles(Problem& p, int64_t n_tokens, const RowWork& work) {
    if (n_tokens == 1) {
        matmul_range<Row, kDecodeTileRows, 1>(p, n_tokens, work);
    } else {
        constexpr int kRows = QuantizedRow<Row> ? kQuantizedBatchTileRows : kFloatBatchTileRows;
        constexpr int kTokens = QuantizedRow<Row> ? kBatchTileTokens : kFloatBatchTileTokens;
        matmul_range<Row, kRows, kTokens>(p, n_tokens, work);
    }
}

template <typename Row>
void matmul_typed(Problem& p, int64_t n_tokens, const RowWork& work) {
#if defined(DENDRO_CPU_VNNI)
    // The rows-in-lanes tiles gather from up to 16 rows at int32 offsets; rows too long for that (over 140 MB,
    // more than any model has) take the row tiles.
    constexpr size_t kMaxLanesRowBytes = std::numeric_limits<int32_t>::max() / (kWideLanes - 1);
    if constexpr (RowsInLanes<Row>) {
        if (p.row_bytes <= kMaxLanesRowBytes) return matmul_rows_in_lanes<Row>(p, n_tokens, work);
    }
    matmul_row_tiles<Row>(p, n_tokens, work);
#else
    matmul_row_tiles<Row>(p, n_tokens, work);
#endif
}

void matmul_work(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, const RowWork& work) {
    Problem p{w, w.row_bytes(), x, y};
    switch (w.type) {
        case GgmlType::F32: return matmul_typed<F32Row>(p, n_tokens, work);
        case GgmlType::F16: return matmul_typed<F16Row>(p, n_tokens, work);
        case GgmlType::BF16: return matmul_typed<BF16Row>(p, n_tokens, work);
        case GgmlType::Q8_0: return matmul_typed<Q8_0Row>(p, n_tokens, work);
        case GgmlType::Q4_0: return matmul_typed<Q4_0Row>(p, n_tokens, work);
        case GgmlType::Q4_1: return matmul_typed<Q4_1Row>(p, n_tokens, work);
        case GgmlType::Q5_0: return matmul_typed<Q5_0Row>(p, n_tokens, work);
        case GgmlType::Q5_1: return matmul_typed<Q5_1Row>(p, n_tokens, work);
        case GgmlType::IQ4_NL: return matmul_typed<IQ4_NLRow>(p, n_tokens, work);
        case GgmlType::Q2_K: return matmul_typed<Q2_KRow>(p, n_tokens, work);
        case GgmlType::Q3_K: return matmul_typed<Q3_KRow>(p, n_tokens, work);
        case GgmlType::Q4_K: return matmul_typed<Q4_KRow>(p, n_tokens, work);
        case GgmlType::Q5_K: return matmul_typed<Q5_KRow>(p, n_tokens, work);
        case GgmlType::Q6_K: return matmul_typed<Q6_KRow>(p, n_tokens, work);
        default: fail_unsupported_type(w);
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
    matmul_work(w, x, n_tokens, y, RowWork{.fixed = {row_begin, row_end}});
}

void matmul_team_rows(const TensorView& w, ConstRows x, int64_t n_tokens, MutRows y, const Team& team,
                      FunctionRef<void(Range)> after, int64_t parts) {
    if (n_tokens <= 0) return;
    const int64_t n_rows = w.n_rows();
    if (n_tokens > kTokenBlock) {
        if (parts < 1 || n_rows % parts != 0) fail("tensor ", w.name, ": ", n_rows, " rows are not ", parts, " equal parts");
        const int64_t part_rows = n_rows / parts;
        for (int64_t part = 0; part < parts; ++part) {
            const Range share = thread_share(part_rows, team.thread, team.n_threads);
            const Range rows{part * part_rows + share.begin, part * part_rows + share.end};
            matmul_rows(w, x, n_tokens, y, rows.begin, rows.end);
            if (after && rows.begin < rows.end) after(rows);
        }
        return;
    }
    const GuidedChunks chunks(n_rows, w.row_bytes(), team.n_threads);
    matmul_work(w, x, n_tokens, y, RowWork{.team = &team, .guided = &chunks, .after = after});
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
