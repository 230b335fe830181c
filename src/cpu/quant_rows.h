// Readers of one weight row of a quantized type (Q8_0, the legacy quants Q4_0..Q5_1, IQ4_NL, the k-quants
// Q2_K..Q6_K) for the CPU matmul: dot<T>(b, a, acc) adds block b of the row dotted with block b of T
// tokens' 8-bit activations (quantized_activations.h) to the tokens' accumulators. The quants of 32
// elements are unpacked to one byte each with 32-byte vector operations (simd.h's U8x32) and multiplied
// with the activations in integers, exactly; the weight scale times the activation scale is applied in fp32
// once per block of 32 (legacy types) or 256 (k-quants, whose sub-block scales and mins are integers and
// stay in the integer sum). The operations per (row, token) do not depend on T, so neither do the results.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "cpu/quantized_activations.h"
#include "cpu/simd.h"
#include "format/ggml_quant_blocks.h"

namespace dendro::cpu {

inline constexpr uint8_t kNibbleMask = 0x0f, kTwoBitMask = 0x03, kOneBitMask = 0x01;

// One output's running sum: hsum8(v) + offset, offset collecting the m * sum(x) terms of Q4_1 and Q5_1.
struct Accumulator {
    F32x8 v = zero8();
    float offset = 0.0f;
    float total() const { return hsum8(v) + offset; }
};

// A block of 32 as unsigned quants: value i = d * (u[i] - kOffset) + m, kOffset a constant of the type (128
// for the signed types, whose bytes are flipped to u = q + 128). With the activations' integer sum the dot
// is exact in integers, sum(u * x) - kOffset * sum(x), for the VNNI tile that puts rows in lanes (matmul.cpp):
// unsigned_block(b) gives the 32 u, or, for the types of packed nibbles (element i in the low nibble of
// byte i, element 16 + i in the high), packed_nibbles(b) the 16 bytes and unsigned_from_nibbles the map
// from nibbles to u, so that the tile transposes the packed bytes and splits the nibbles after (half the
// shuffles). The tile gathers each row's d (and m) itself, as the block's first 4 bytes.
inline constexpr int kSignedToUnsigned = 128;
template <typename Block>
inline constexpr bool kHeaderFirst = offsetof(Block, d) == 0;
template <typename Block>
inline constexpr bool kMinAfterScale = offsetof(Block, m) == sizeof(uint16_t);
static_assert(kHeaderFirst<BlockQ8_0> && kHeaderFirst<BlockQ4_0> && kHeaderFirst<BlockQ5_0> && kHeaderFirst<BlockIQ4_NL> &&
              kHeaderFirst<BlockQ4_1> && kHeaderFirst<BlockQ5_1> && kMinAfterScale<BlockQ4_1> && kMinAfterScale<BlockQ5_1>);

template <typename Block, int64_t BlockSize>
struct BlockRow {
    static constexpr int64_t kBlockSize = BlockSize;
    static constexpr size_t kBlockBytes = sizeof(Block);
    const Block* blocks = nullptr;
    BlockRow() = default;
    explicit BlockRow(const uint8_t* row) : blocks(reinterpret_cast<const Block*>(row)) {}
};

// Blocks of 32 whose values are d * w with w signed bytes (Q8_0, IQ4_NL): the sign trick's dot.
template <int T>
void dot_signed_block(I8x32 w, float d, const ActivationBlock32* const* a, Accumulator* acc) {
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t].v = fma8(broadcast8(d * a[t]->d), to_f32(dot32_i8_i8(w, a[t]->q)), acc[t].v);
}

// Blocks of 32 whose values are d * u + m with u unsigned (Q4_1, Q5_1; Q4_0, Q5_0 below): the sum of x
// times m goes to the offset.
template <int T>
void dot_offset_block(U8x32 u, float d, float m, const ActivationBlock32* const* a, Accumulator* acc) {
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        acc[t].v = fma8(broadcast8(d * a[t]->d), to_f32(dot32_u8_i8(u, a[t]->q)), acc[t].v);
        acc[t].offset = fma1(m, a[t]->scaled_sum, acc[t].offset);
    }
}

// A legacy Q5 block's 32 quants: 4 low bits from the nibbles, the fifth from qh.
inline U8x32 legacy_q5(const uint8_t* qs, const uint8_t* qh) {
    return or32_u8(nibbles32_u8(qs), bit_bytes32_u8(load_le32(qh), 1u << kNibbleBits));
}

struct Q8_0Row : BlockRow<BlockQ8_0, kQ8_0BlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock32;
    static constexpr int kOffset = kSignedToUnsigned;
    U8x32 unsigned_block(int64_t b) const { return plus128_u8(load32_i8(blocks[b].qs)); }
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        dot_signed_block<T>(load32_i8(blocks[b].qs), f16_scalar(blocks[b].d), a, acc);
    }
};

// Q4_0 and Q5_0 take the Q4_1/Q5_1 path with m = -offset * d (exact: a power of two times d), which saves
// the sign trick's instructions.
struct Q4_0Row : BlockRow<BlockQ4_0, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock32;
    static constexpr int kOffset = kQ4Offset;
    const uint8_t* packed_nibbles(int64_t b) const { return blocks[b].qs; }
    static U8x32 unsigned_from_nibbles(U8x32 nibbles) { return nibbles; }
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const float d = f16_scalar(blocks[b].d);
        dot_offset_block<T>(nibbles32_u8(blocks[b].qs), d, -kQ4Offset * d, a, acc);
    }
};

struct Q5_0Row : BlockRow<BlockQ5_0, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock32;
    static constexpr int kOffset = kQ5Offset;
    U8x32 unsigned_block(int64_t b) const { return legacy_q5(blocks[b].qs, blocks[b].qh); }
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const BlockQ5_0& k = blocks[b];
        const float d = f16_scalar(k.d);
        dot_offset_block<T>(legacy_q5(k.qs, k.qh), d, -kQ5Offset * d, a, acc);
    }
};

struct IQ4_NLRow : BlockRow<BlockIQ4_NL, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock32;
    static constexpr int kOffset = kSignedToUnsigned;
    const uint8_t* packed_nibbles(int64_t b) const { return blocks[b].qs; }
    static U8x32 unsigned_from_nibbles(U8x32 nibbles) { return plus128_u8(lookup32_i8(nibbles, kIQ4NLValues)); }
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        dot_signed_block<T>(lookup32_i8(nibbles32_u8(blocks[b].qs), kIQ4NLValues), f16_scalar(blocks[b].d), a, acc);
    }
};

struct Q4_1Row : BlockRow<BlockQ4_1, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock32;
    static constexpr int kOffset = 0;
    const uint8_t* packed_nibbles(int64_t b) const { return blocks[b].qs; }
    static U8x32 unsigned_from_nibbles(U8x32 nibbles) { return nibbles; }
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const BlockQ4_1& k = blocks[b];
        dot_offset_block<T>(nibbles32_u8(k.qs), f16_scalar(k.d), f16_scalar(k.m), a, acc);
    }
};

struct Q5_1Row : BlockRow<BlockQ5_1, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock32;
    static constexpr int kOffset = 0;
    U8x32 unsigned_block(int64_t b) const { return legacy_q5(blocks[b].qs, blocks[b].qh); }
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const BlockQ5_1& k = blocks[b];
        dot_offset_block<T>(legacy_q5(k.qs, k.qh), f16_scalar(k.d), f16_scalar(k.m), a, acc);
    }
};

// A k-quant super-block's 8 groups of 32 elements: group g is half g / 4, quarter g % 4 for the types laid
// out by halves and quarters, and sub-blocks 2g, 2g + 1 of 16 (or sub-block g of 32) for the scales.
inline constexpr int kGroups = static_cast<int>(kKQuantBlockSize / kLegacyQuantBlockSize);
inline constexpr int kSubBlocks = static_cast<int>(kKQuantBlockSize / kSubBlockSize);
inline constexpr int kQuartersPerHalf = 4;
inline constexpr int kKQuantHalfBytes = 32;  // bytes of a half for 2-bit planes (Q2_K, Q3_K, Q6_K's qh)
inline int half_of(int g) { return g / kQuartersPerHalf; }
inline int quarter_of(int g) { return g % kQuartersPerHalf; }

// Sum over the super-block of scale[s] * (u · x over sub-block s), for T tokens; quants(g) gives group g.
// scales holds an int16 per sub-block of 16 (Q4_K and Q5_K give each of theirs twice).
// kScalesPer32: the two int16 of each pair are equal (Q4_K, Q5_K: a scale per 32), so their broadcast is the
// scale vector as it is (one shuffle fewer per group of 32: 56 fewer instructions per 8 rows of a
// super-block, Q4_K decode ~10 % faster on one core in cache).
template <int T, typename Quants, bool kScalesPer32 = false>
[[gnu::always_inline]] inline void scaled_sums(const Quants& quants, const int16_t* scales, const ActivationBlock256* const* a, I32x8* sums) {
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) sums[t] = zero8_i32();
#pragma GCC unroll 8
    for (int g = 0; g < kGroups; ++g) {
        const U8x32 u = quants(g);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
            sums[t] = add_scaled_dot32_u8_i8<kScalesPer32>(sums[t], u, a[t]->q + g * kLegacyQuantBlockSize, scales + 2 * g);
        }
    }
}

// Values (d * scale) * u - (dmin * min) per sub-block (Q2_K, Q4_K, Q5_K): two fp32 steps per super-block.
template <int T, bool kScalesPer32, typename Quants>
void dot_with_mins(const Quants& quants, const int16_t* scales, const int16_t* mins, float d, float dmin,
                   const ActivationBlock256* const* a, Accumulator* acc) {
    I32x8 sums[T];
    scaled_sums<T, Quants, kScalesPer32>(quants, scales, a, sums);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        acc[t].v = fma8(broadcast8(d * a[t]->d), to_f32(sums[t]), acc[t].v);
        acc[t].v = fma8(broadcast8(-dmin * a[t]->d), to_f32(dot16_i16(mins, a[t]->sums)), acc[t].v);
    }
}

// Values (d * scale) * (u - offset), offset = 2^kOffsetBits (Q3_K, Q6_K): the offset times the sub-block
// sums of x is taken off in integers.
template <int T, int kOffsetBits, typename Quants>
void dot_with_offset(const Quants& quants, const int16_t* scales, float d, const ActivationBlock256* const* a,
                     Accumulator* acc) {
    I32x8 sums[T];
    scaled_sums<T>(quants, scales, a, sums);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        const I32x8 total = sub_shifted8_i32(sums[t], dot16_i16(scales, a[t]->sums), kOffsetBits);
        acc[t].v = fma8(broadcast8(d * a[t]->d), to_f32(total), acc[t].v);
    }
}

struct Q2_KRow : BlockRow<BlockQ2_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock256;
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const BlockQ2_K& k = blocks[b];
        constexpr uint64_t kNibbles = kNibbleMask * kOnePerByte;
        const uint64_t first = load_le64(k.scales), next = load_le64(k.scales + kLanes);
        alignas(32) int16_t scales[kSubBlocks], mins[kSubBlocks];
        widen16_u8_i16(first & kNibbles, next & kNibbles, 0, scales);
        widen16_u8_i16((first >> kNibbleBits) & kNibbles, (next >> kNibbleBits) & kNibbles, 0, mins);
        const auto quants = [&](int g) {
            return bits32_u8(load32_u8(k.qs + kKQuantHalfBytes * half_of(g)), 2 * quarter_of(g), kTwoBitMask);
        };
        dot_with_mins<T, false>(quants, scales, mins, f16_scalar(k.d), f16_scalar(k.dmin), a, acc);
    }
};

struct Q3_KRow : BlockRow<BlockQ3_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock256;
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const BlockQ3_K& k = blocks[b];
        const Q3KScales packed = q3_k_scales(k.scales);
        alignas(32) int16_t scales[kSubBlocks];
        widen16_u8_i16(packed.low, packed.high, kQ3KScaleOffset, scales);
        const U8x32 hmask = load32_u8(k.hmask);
        const auto quants = [&](int g) {
            const U8x32 low = bits32_u8(load32_u8(k.qs + kKQuantHalfBytes * half_of(g)), 2 * quarter_of(g), kTwoBitMask);
            return or32_u8(low, move_bits32_u8(hmask, g, 2, kOneBitMask));  // group g's third bit is bit g
        };
        dot_with_offset<T, std::countr_zero(static_cast<unsigned>(kQ3KOffset))>(quants, scales, f16_scalar(k.d), a, acc);
    }
};

#if defined(DENDRO_CPU_VNNI)
// A token's super-block for the 512-bit k-quant decode: the 32-byte sub-blocks of 32 in pairs, as one
// 64-byte load of Q4_K/Q5_K quants holds them (qs[32c ..] has sub-block 2c in its low nibbles, 2c + 1 in
// its high): pair v holds sub-block wide_sub_block(v, 0) in its low 256 bits and wide_sub_block(v, 1) in its
// high. mins_weights holds, as int16, zeros in its low 8 lanes and a.sums32 in its high 8, to meet
// k_quant_scales_mins_vector's widened bytes: scales, then mins.
inline constexpr int kWidePairs = 4;
constexpr int wide_sub_block(int v, int half) { return 4 * (v / 2) + v % 2 + 2 * half; }
struct WideActivation256 {
    __m512i q[kWidePairs];
    __m256i mins_weights;
    explicit WideActivation256(const ActivationBlock256& a) {
#pragma GCC unroll 4
        for (int v = 0; v < kWidePairs; ++v) {
            const auto sub_block = [&](int half) {
                return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + kLegacyQuantBlockSize * wide_sub_block(v, half)));
            };
            q[v] = wide_from_halves(sub_block(0), sub_block(1));
        }
        mins_weights = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.sums32)), 1);
    }
};

// k_quant_scales_mins (format/ggml_quant_blocks.h) in one vector: bytes 0-7 the scales, 8-15 the mins, from
// the 12 packed bytes a, b, c (4 each; the 4 bytes after them are read and unused): a & 63, then
// (c & 15) | (a >> 6) << 4, then b & 63, then (c >> 4) | (b >> 6) << 4. Scalar, it took ~25 instructions a
// row, a third of the 512-bit decode's.
inline __m128i k_quant_scales_mins_vector(const uint8_t* packed) {
    constexpr char kZero = static_cast<char>(0x80);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
    const __m128i low_parts = _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));  // a c b c
    const __m128i top_parts = _mm_shuffle_epi8(bytes, _mm_setr_epi8(kZero, kZero, kZero, kZero, 0, 1, 2, 3, kZero, kZero, kZero, kZero, 4, 5, 6, 7));
    // The last 4 bytes take c's high nibbles: their int16 lanes (6, 7) shifted by 4, the others not.
    const __m128i low = _mm_srlv_epi16(low_parts, _mm_setr_epi16(0, 0, 0, 0, 0, 0, kNibbleBits, kNibbleBits));
    const __m128i top = _mm_and_si128(_mm_srli_epi16(top_parts, 2), _mm_set1_epi8(0x30));  // bits 6-7 to 4-5
    const __m128i low_mask = _mm_setr_epi8(0x3f, 0x3f, 0x3f, 0x3f, 0x0f, 0x0f, 0x0f, 0x0f, 0x3f, 0x3f, 0x3f, 0x3f, 0x0f, 0x0f, 0x0f, 0x0f);
    constexpr int kSelectByMask = 0xca;  // ternary logic: mask ? low : top, bit by bit
    return _mm_ternarylogic_epi32(low_mask, low, top, kSelectByMask);
}
#endif

// Q4_K and Q5_K: group g is sub-block g, the low (g even) or high nibbles of qs[32 (g / 2) ..]; Q5_K's fifth
// bit of sub-block g is bit g of qh.
template <typename Block, bool kFifthBit>
struct KQuantWithMinsRow : BlockRow<Block, kKQuantBlockSize> {
    using BlockRow<Block, kKQuantBlockSize>::BlockRow;
    using Activation = ActivationBlock256;
    using BlockType = Block;
    static constexpr bool kHasFifthBit = kFifthBit;
    // A super-block's scales and mins (an int16 per sub-block of 16, each given twice) and, as a call, the
    // quants of its group g.
    struct Decoded {
        const Block& k;
        alignas(32) int16_t scales[kSubBlocks], mins[kSubBlocks];
        explicit Decoded(const Block& block) : k(block) {
            const KQuantScalesMins sm = k_quant_scales_mins(k.scales);
            widen8_twice_u8_i16(sm.scales, scales);
            widen8_twice_u8_i16(sm.mins, mins);
        }
        U8x32 operator()(int g) const {
            U8x32 q = bits32_u8(load32_u8(k.qs + kKQuantHalfBytes * (g / 2)), kNibbleBits * (g % 2), kNibbleMask);
            if constexpr (kFifthBit) {
                q = or32_u8(q, move_bits32_u8(load32_u8(k.qh), g, kNibbleBits, kOneBitMask));
            }
            return q;
        }
    };
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const Decoded q(this->blocks[b]);
        dot_with_mins<T, true>(q, q.scales, q.mins, f16_scalar(q.k.d), f16_scalar(q.k.dmin), a, acc);
    }
#if defined(DENDRO_CPU_VNNI)
    // Block b's exact integer dots with one token, spread over 8 lanes: sum_j scale_j (q_j . x_j) and
    // sum_j min_j sum(x_j) (for the rows-in-lanes tile of matmul.cpp, which scales them itself). In 512-bit
    // vectors, sub-blocks paired as WideActivation256 pairs them: one load per 64 bytes of quants, and each
    // pair's scales are the 8 scale bytes broadcast once and shuffled into int16, where the 256-bit groups
    // took a broadcast and a load per group (Q4_K decode: ~850 -> ~500 instructions per 8 rows of a
    // super-block). The integers are the same.
    void integer_dots(int64_t b, const WideActivation256& a, I32x8* scaled, I32x8* mins) const {
        const Block& k = this->blocks[b];
        const __m128i scales_mins = k_quant_scales_mins_vector(k.scales);
        const __m512i nibble_mask = _mm512_set1_epi8(static_cast<char>(kNibbleMask));
        const __m512i first = _mm512_loadu_si512(k.qs), second = _mm512_loadu_si512(k.qs + 2 * kKQuantHalfBytes);
        __m512i quants[kWidePairs] = {_mm512_and_si512(first, nibble_mask), _mm512_and_si512(_mm512_srli_epi16(first, kNibbleBits), nibble_mask),
                                      _mm512_and_si512(second, nibble_mask), _mm512_and_si512(_mm512_srli_epi16(second, kNibbleBits), nibble_mask)};
        if constexpr (kFifthBit) {
            // Element l of sub-block s takes bit s of qh[l]: qh in both halves, each half's bit tested.
            const __m512i qh = wide_repeat(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qh)));
            const __m512i fifth = _mm512_set1_epi8(static_cast<char>(1u << kNibbleBits));
#pragma GCC unroll 4
            for (int v = 0; v < kWidePairs; ++v) {
                const __m512i bits = wide_halves_u8(static_cast<uint8_t>(1u << wide_sub_block(v, 0)), static_cast<uint8_t>(1u << wide_sub_block(v, 1)));
                quants[v] = _mm512_mask_add_epi8(quants[v], _mm512_test_epi8_mask(qh, bits), quants[v], fifth);  // bit 4 is clear
            }
        }
        const __m512i scale_bytes = wide_repeat_low_qword(scales_mins);
        __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int v = 0; v < kWidePairs; ++v) {
            // int16 lane i: scale byte s of its half's sub-block s, zero-extended (index 0x80 gives a zero).
            constexpr uint16_t kZeroHigh = 0x8000;
            const __m512i index = wide_halves_u16(static_cast<uint16_t>(kZeroHigh | wide_sub_block(v, 0)), static_cast<uint16_t>(kZeroHigh | wide_sub_block(v, 1)));
            sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(quants[v], a.q[v]), _mm512_shuffle_epi8(scale_bytes, index));
        }
        *scaled = {_mm256_add_epi32(wide_low_half(sum), wide_high_half(sum))};
        *mins = {_mm256_madd_epi16(_mm256_cvtepu8_epi16(scales_mins), a.mins_weights)};
    }
#endif
};
using Q4_KRow = KQuantWithMinsRow<BlockQ4_K, false>;
using Q5_KRow = KQuantWithMinsRow<BlockQ5_K, true>;

// Q6_K: in half h, quarter j, the low 4 bits are the low (j < 2) or high nibbles of ql[64h + 32 (j & 1) ..],
// the high 2 bits are bits 2j of qh[32h ..].
inline constexpr int kQ6KOffsetBits = std::countr_zero(static_cast<unsigned>(kQ6KOffset));
inline constexpr int kQ6KQlHalfBytes = 64, kQ6KQlQuarterBytes = 32;

struct Q6_KRow : BlockRow<BlockQ6_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    using Activation = ActivationBlock256;
    // A super-block's quants: a call gives those of its group g.
    struct Quants {
        const BlockQ6_K& k;
        U8x32 operator()(int g) const {
            const int h = half_of(g), j = quarter_of(g);
            const uint8_t* ql = k.ql + kQ6KQlHalfBytes * h + kQ6KQlQuarterBytes * (j & 1);
            const U8x32 low = bits32_u8(load32_u8(ql), j >= 2 ? kNibbleBits : 0, kNibbleMask);
            return or32_u8(low, move_bits32_u8(load32_u8(k.qh + kKQuantHalfBytes * h), 2 * j, kNibbleBits, kTwoBitMask));
        }
    };
    // And its scales, an int16 per sub-block of 16.
    struct Decoded : Quants {
        alignas(32) int16_t scales[kSubBlocks];
        explicit Decoded(const BlockQ6_K& block) : Quants{block} { widen16_i8_i16(k.scales, scales); }
    };
    template <int T>
    void dot(int64_t b, const Activation* const* a, Accumulator* acc) const {
        const Decoded q(blocks[b]);
        dot_with_offset<T, kQ6KOffsetBits>(q, q.scales, f16_scalar(q.k.d), a, acc);
    }
#if defined(DENDRO_CPU_VNNI)
    // Block b's exact integer dot with one token, sum_s scale_s ((q_s - 32) . x_s), spread over 8 lanes
    // (for the rows-in-lanes tile of matmul.cpp, which scales it itself). In 512-bit vectors: a half's 64
    // bytes of ql hold its elements 0-63 in their low nibbles and 64-127 in their high, both in order, so
    // they meet the activations as these lie; the half's 32 bytes of qh, repeated in both 256-bit halves,
    // give the high bits of each by one variable shift. Byte pairs (<= 2 * 63 * 128, unsaturated) are
    // weighted by the 16-bit scales in one dpwssd per 64 elements, where 256-bit groups took a dpbusd per
    // 32, the pairwise adds and the multiplies (the same integers).
    void integer_dot(int64_t b, const Activation* a, I32x8* total) const {
        const BlockQ6_K& k = blocks[b];
        constexpr int kHalfElements = 128, kVectorElements = 64;
        const __m512i low_nibbles = _mm512_set1_epi8(static_cast<char>(kNibbleMask));
        const __m512i high_bits = _mm512_set1_epi8(static_cast<char>(kTwoBitMask << kNibbleBits));
        constexpr int kSelectOr = 0xea;  // ternary logic: (a & b) | c
        // qh's bits 0-1 (low 256 bits) and 2-3 (high) moved to 4-5 for the low nibbles; bits 4-5 and 6-7
        // for the high nibbles. 16-bit shifts: what crosses into the neighbouring byte is masked off.
        const __m512i up = wide_halves_u16(kNibbleBits, kNibbleBits - 2), down = wide_halves_u16(0, 2);
        const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k.scales)));
        const __m512i scales_wide = _mm512_castsi256_si512(scales16);
        __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512(k.ql + kQ6KQlHalfBytes * h);
            const __m512i qh = wide_repeat(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qh + kKQuantHalfBytes * h)));
            const __m512i quants[2] = {
                _mm512_ternarylogic_epi32(_mm512_sllv_epi16(qh, up), high_bits, _mm512_and_si512(ql, low_nibbles), kSelectOr),
                _mm512_ternarylogic_epi32(_mm512_srlv_epi16(qh, down), high_bits,
                                          _mm512_and_si512(_mm512_srli_epi16(ql, kNibbleBits), low_nibbles), kSelectOr)};
#pragma GCC unroll 2
            for (int v = 0; v < 2; ++v) {
                // int16 lane i covers elements 2i, 2i + 1 of the 64: sub-block 8h + 4v + i / 8.
                alignas(64) int16_t index[kVectorElements / 2];
                for (int i = 0; i < kVectorElements / 2; ++i) {
                    index[i] = static_cast<int16_t>((kHalfElements * h + kVectorElements * v + 2 * i) / kSubBlockSize);
                }
                const __m512i x = _mm512_loadu_si512(a->q + kHalfElements * h + kVectorElements * v);
                sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(quants[v], x), _mm512_permutexvar_epi16(_mm512_load_si512(index), scales_wide));
            }
        }
        const I32x8 sums{_mm256_add_epi32(wide_low_half(sum), wide_high_half(sum))};
        const I32x8 offsets{_mm256_madd_epi16(scales16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->sums)))};
        *total = sub_shifted8_i32(sums, offsets, kQ6KOffsetBits);
    }
#endif
};

}  // namespace dendro::cpu
