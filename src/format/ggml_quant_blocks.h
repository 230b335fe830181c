// Byte layouts of ggml's legacy quants (Q4_0, Q4_1, Q5_0, Q5_1: blocks of 32), IQ4_NL (blocks of 32; what
// llama.cpp's Q2_K and Q3_K recipes store rows that are not whole k-quant blocks in) and k-quants (Q2_K..Q6_K:
// super-blocks of 256 cut into sub-blocks of 16 or 32 with their own scales), exactly as ggml stores them,
// and their scalar reference dequantizers. Scales d, m, dmin are fp16 bits. A k-quant super-block is two
// halves of 128 elements; within a half, element l of quarter j (l < 32) takes its low bits from byte l of the
// half's quant bytes shifted right by the quarter's bit position (4-bit types pair a low and a high nibble).
#pragma once

#include <cstdint>
#include <cstring>

#include "format/ggml_types.h"

namespace dendro {

inline constexpr int64_t kLegacyQuantBlockSize = 32;
inline constexpr int64_t kKQuantBlockSize = 256;  // ggml's QK_K
inline constexpr int64_t kKQuantScaleBytes = 12;  // Q3_K, Q4_K, Q5_K: 6-bit scales packed into 12 bytes

// Q4_0: value = d * (q - 8); element j < 16 is the low nibble of qs[j], element j + 16 its high nibble.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kLegacyQuantBlockSize / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1: value = d * q + m, nibbles as Q4_0.
struct BlockQ4_1 {
    uint16_t d, m;
    uint8_t qs[kLegacyQuantBlockSize / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0: value = d * (q - 16); q's low 4 bits as Q4_0, its fifth bit is bit j of the little-endian qh.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kLegacyQuantBlockSize / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1: value = d * q + m, bits as Q5_0.
struct BlockQ5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[kLegacyQuantBlockSize / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// IQ4_NL: value = d * kIQ4NLValues[q], q the 4-bit index, nibbles as Q4_0.
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kLegacyQuantBlockSize / 2];
};
static_assert(sizeof(BlockIQ4_NL) == 18);
inline constexpr int kIQ4NLLevels = 16;
inline constexpr int8_t kIQ4NLValues[kIQ4NLLevels] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                      1,    13,   25,  38,  53,  69,  89,  113};

// Q2_K: 16 sub-blocks of 16; scales[i] holds sub-block i's 4-bit scale (low nibble) and 4-bit min (high);
// value = (d * scale) * q - (dmin * min), q = 2 bits: quarter j of half h is bits 2j of qs[32h + l].
struct BlockQ2_K {
    uint8_t scales[kKQuantBlockSize / 16];
    uint8_t qs[kKQuantBlockSize / 4];
    uint16_t d, dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (see q3_k_scale); value = (d * scale) * (q - 4) where
// q's 2 low bits are laid out as Q2_K's and its third bit is bit (4h + j) of hmask[l].
struct BlockQ3_K {
    uint8_t hmask[kKQuantBlockSize / 8];
    uint8_t qs[kKQuantBlockSize / 4];
    uint8_t scales[kKQuantScaleBytes];
    uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins (see k_quant_scale_min); value = (d * scale) * q -
// (dmin * min). Sub-block 2g is the low nibbles of qs[32g .. 32g + 31], sub-block 2g + 1 their high nibbles.
struct BlockQ4_K {
    uint16_t d, dmin;
    uint8_t scales[kKQuantScaleBytes];
    uint8_t qs[kKQuantBlockSize / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: as Q4_K with a fifth bit: element l of sub-block s takes bit s of qh[l].
struct BlockQ5_K {
    uint16_t d, dmin;
    uint8_t scales[kKQuantScaleBytes];
    uint8_t qh[kKQuantBlockSize / 8];
    uint8_t qs[kKQuantBlockSize / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: 16 sub-blocks of 16 with int8 scales; value = (d * scale) * (q - 32), q = 6 bits. In half h, quarter
// j (j = 0..3), element l: low 4 bits from ql[64h + 32(j & 1) + l] (low nibble for j < 2, high for j >= 2),
// high 2 bits are bits 2j of qh[32h + l].
struct BlockQ6_K {
    uint8_t ql[kKQuantBlockSize / 2];
    uint8_t qh[kKQuantBlockSize / 4];
    int8_t scales[kKQuantBlockSize / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

inline constexpr int kNibbleBits = 4;
// Offsets of the quants that are stored unsigned but mean q - offset.
inline constexpr int kQ4Offset = 8, kQ5Offset = 16, kQ3KOffset = 4, kQ6KOffset = 32;

// Sub-block scales unpacked to one byte each: byte j of a word (bits 8j..8j+7) is sub-block j's value.
inline constexpr uint64_t kOnePerByte = 0x0101010101010101ull;
inline constexpr int kByteBits = 8;
inline int byte_of(uint64_t word, int j) { return static_cast<int>((word >> (kByteBits * j)) & 0xffu); }

inline uint32_t load_le32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;  // GGUF is little-endian, as is every host Dendro builds for
}
inline uint64_t load_le64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

struct KQuantScalesMins {
    uint64_t scales, mins;  // 6-bit values of sub-blocks 0..7
};
// Q4_K/Q5_K: sub-blocks j < 4 have their scale and min in the low 6 bits of bytes j and j + 4; j >= 4 take
// their low 4 bits from the low and high nibble of byte j + 4 and their top 2 bits from the top of bytes
// j - 4 (scale) and j (min).
inline KQuantScalesMins k_quant_scales_mins(const uint8_t* packed) {
    constexpr uint32_t kSixBits = 0x3f3f3f3fu, kNibbles = 0x0f0f0f0fu, kBits45 = 0x30303030u;
    const uint32_t a = load_le32(packed), b = load_le32(packed + 4), c = load_le32(packed + 8);
    const uint32_t high_scales = (c & kNibbles) | ((a >> 2) & kBits45);  // bits 6-7 of a byte move to 4-5
    const uint32_t high_mins = ((c >> 4) & kNibbles) | ((b >> 2) & kBits45);
    return {(a & kSixBits) | static_cast<uint64_t>(high_scales) << 32,
            (b & kSixBits) | static_cast<uint64_t>(high_mins) << 32};
}

struct Q3KScales {
    uint64_t low, high;  // unsigned 6-bit scales of sub-blocks 0..7 and 8..15; the signed scale is minus 32
};
inline constexpr int kQ3KScaleOffset = 32;
// Q3_K: sub-block j's low 4 bits are the low (j < 8) or high nibble of byte j % 8, its top 2 bits are bits
// 2 (j / 4) of byte 8 + j % 4.
inline Q3KScales q3_k_scales(const uint8_t* packed) {
    constexpr uint64_t kNibbles = 0x0f * kOnePerByte;
    constexpr uint32_t kTwoBits = 0x03030303u;
    const uint64_t low = load_le64(packed);
    const uint32_t top = load_le32(packed + 8);
    const auto top_bits = [&](int first_quarter) {
        return static_cast<uint64_t>((top >> (2 * first_quarter)) & kTwoBits) |
               static_cast<uint64_t>((top >> (2 * first_quarter + 2)) & kTwoBits) << 32;
    };
    return {(low & kNibbles) | top_bits(0) << kNibbleBits,
            ((low >> kNibbleBits) & kNibbles) | top_bits(2) << kNibbleBits};
}

// Reference dequantizers of n_blocks whole blocks (the scalar formulas above, each product rounded to fp32
// in the order written).
void dequantize_q4_0(const BlockQ4_0* blocks, float* dst, int64_t n_blocks);
void dequantize_q4_1(const BlockQ4_1* blocks, float* dst, int64_t n_blocks);
void dequantize_q5_0(const BlockQ5_0* blocks, float* dst, int64_t n_blocks);
void dequantize_q5_1(const BlockQ5_1* blocks, float* dst, int64_t n_blocks);
void dequantize_iq4_nl(const BlockIQ4_NL* blocks, float* dst, int64_t n_blocks);
void dequantize_q2_k(const BlockQ2_K* blocks, float* dst, int64_t n_blocks);
void dequantize_q3_k(const BlockQ3_K* blocks, float* dst, int64_t n_blocks);
void dequantize_q4_k(const BlockQ4_K* blocks, float* dst, int64_t n_blocks);
void dequantize_q5_k(const BlockQ5_K* blocks, float* dst, int64_t n_blocks);
void dequantize_q6_k(const BlockQ6_K* blocks, float* dst, int64_t n_blocks);

}  // namespace dendro
