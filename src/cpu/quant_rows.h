// Readers of one weight row of a legacy quant (Q4_0, Q4_1, Q5_0, Q5_1), IQ4_NL or k-quant (Q2_K..Q6_K) for the CPU
// matmul, giving the weights as fp32, bit for bit the values of the scalar reference dequantizer
// (ggml_quant_blocks.cpp). The quants of 32 elements are unpacked to one byte each with 32-byte vector
// operations (cpu_simd.h's U8x32), widened to 4 chunks of 8 fp32 lanes, then scaled: the same fp32 operations
// as the reference, so one code serves the AVX2 and the portable build.
#pragma once

#include <array>
#include <cstdint>

#include "cpu/simd.h"
#include "format/ggml_quant_blocks.h"

namespace dendro::cpu {

inline constexpr uint8_t kNibbleMask = 0x0f, kTwoBitMask = 0x03, kOneBitMask = 0x01;

// Elements are read in groups of 4 chunks (32 elements: a legacy block, a k-quant quarter), within which
// the scales and bit positions are fixed.
inline constexpr int kGroupChunks = 4;
inline constexpr int64_t kGroupSize = kGroupChunks * kLanes;
using Group = F32x8[kGroupChunks];

// A row of `Block`s. The readers' interface: begin_block(b) takes block b's scales, group(g, w) writes the
// 8-element chunks of group g (elements 32g..32g+31) of that block to w.
template <typename Block, int64_t BlockSize>
struct BlockRow {
    static constexpr int64_t kBlockSize = BlockSize;
    static constexpr int kGroups = static_cast<int>(BlockSize / kGroupSize);
    const Block* blocks = nullptr;
    const Block* block = nullptr;
    BlockRow() = default;
    explicit BlockRow(const uint8_t* row) : blocks(reinterpret_cast<const Block*>(row)) {}
};

// A legacy Q5 block's 32 quants: 4 low bits from the nibbles, the fifth from qh.
inline U8x32 legacy_q5(const uint8_t* qs, const uint8_t* qh) {
    return or32_u8(nibbles32_u8(qs), shl32_u8(bit_bytes32_u8(load_le32(qh)), kNibbleBits));
}

struct Q4_0Row : BlockRow<BlockQ4_0, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
    }
    void group(int, Group& w) const {
        widen32_u8(nibbles32_u8(block->qs), w);
        const F32x8 offset = broadcast8(kQ4Offset);
        for (F32x8& chunk : w) chunk = mul8(d, sub8(chunk, offset));
    }
};

struct Q4_1Row : BlockRow<BlockQ4_1, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d, minus_m;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
        minus_m = broadcast8(-f16_scalar(block->m));
    }
    void group(int, Group& w) const {
        widen32_u8(nibbles32_u8(block->qs), w);
        for (F32x8& chunk : w) chunk = sub8(mul8(d, chunk), minus_m);
    }
};

struct Q5_0Row : BlockRow<BlockQ5_0, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
    }
    void group(int, Group& w) const {
        widen32_u8(legacy_q5(block->qs, block->qh), w);
        const F32x8 offset = broadcast8(kQ5Offset);
        for (F32x8& chunk : w) chunk = mul8(d, sub8(chunk, offset));
    }
};

struct Q5_1Row : BlockRow<BlockQ5_1, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d, minus_m;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
        minus_m = broadcast8(-f16_scalar(block->m));
    }
    void group(int, Group& w) const {
        widen32_u8(legacy_q5(block->qs, block->qh), w);
        for (F32x8& chunk : w) chunk = sub8(mul8(d, chunk), minus_m);
    }
};

// IQ4_NL's levels as unsigned bytes (plus 128), so that they widen like the other quants.
inline constexpr int kIQ4NLBias = 128;
inline constexpr auto kIQ4NLBiasedLevels = [] {
    std::array<uint8_t, kIQ4NLLevels> levels{};
    for (int i = 0; i < kIQ4NLLevels; ++i) levels[i] = static_cast<uint8_t>(kIQ4NLValues[i] + kIQ4NLBias);
    return levels;
}();

struct IQ4_NLRow : BlockRow<BlockIQ4_NL, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
    }
    void group(int, Group& w) const {
        widen32_u8(lookup32_u8(nibbles32_u8(block->qs), kIQ4NLBiasedLevels.data()), w);
        const F32x8 bias = broadcast8(kIQ4NLBias);
        for (F32x8& chunk : w) chunk = mul8(d, sub8(chunk, bias));  // the level itself, exactly
    }
};

// Group g of a k-quant block laid out by half and quarter: half g / 4, quarter g % 4; its sub-blocks of 16
// are 2g (chunks 0, 1) and 2g + 1 (chunks 2, 3).
inline constexpr int kQuartersPerHalf = 4;
inline constexpr int kKQuantHalfBytes = 32;  // bytes of a half for 2-bit planes (Q2_K, Q3_K, Q6_K's qh)
inline constexpr int kSmallSubBlocks = static_cast<int>(kKQuantBlockSize / 16);
inline constexpr int kLargeSubBlocks = static_cast<int>(kKQuantBlockSize / 32);
inline int half_of(int g) { return g / kQuartersPerHalf; }
inline int quarter_of(int g) { return g % kQuartersPerHalf; }
inline int small_sub_block(int g, int i) { return 2 * g + i / 2; }

struct Q2_KRow : BlockRow<BlockQ2_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    float scale[kSmallSubBlocks], min[kSmallSubBlocks];
    void begin_block(int64_t b) {
        block = blocks + b;
        const F32x8 d = broadcast8(f16_scalar(block->d)), dmin = broadcast8(f16_scalar(block->dmin));
        constexpr uint64_t kNibbles = kNibbleMask * kOnePerByte;
        for (int half = 0; half < 2; ++half) {
            const uint64_t packed = load_le64(block->scales + kLanes * half);
            store8(scale + kLanes * half, mul8(d, widen8_u8(packed & kNibbles)));
            store8(min + kLanes * half, mul8(dmin, widen8_u8((packed >> kNibbleBits) & kNibbles)));
        }
    }
    void group(int g, Group& w) const {
        widen32_u8(bits32_u8(load32_u8(block->qs + kKQuantHalfBytes * half_of(g)), 2 * quarter_of(g), kTwoBitMask), w);
#pragma GCC unroll 4
        for (int i = 0; i < kGroupChunks; ++i) {
            const int s = small_sub_block(g, i);
            w[i] = sub8(mul8(broadcast8(scale[s]), w[i]), broadcast8(min[s]));
        }
    }
};

struct Q3_KRow : BlockRow<BlockQ3_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    float scale[kSmallSubBlocks];
    void begin_block(int64_t b) {
        block = blocks + b;
        const F32x8 d = broadcast8(f16_scalar(block->d)), offset = broadcast8(kQ3KScaleOffset);
        const Q3KScales scales = q3_k_scales(block->scales);
        store8(scale, mul8(d, sub8(widen8_u8(scales.low), offset)));
        store8(scale + kLanes, mul8(d, sub8(widen8_u8(scales.high), offset)));
    }
    void group(int g, Group& w) const {
        const uint8_t* qs = block->qs + kKQuantHalfBytes * half_of(g);
        const U8x32 low = bits32_u8(load32_u8(qs), 2 * quarter_of(g), kTwoBitMask);
        const int high_bit = kQuartersPerHalf * half_of(g) + quarter_of(g);
        const U8x32 high = bits32_u8(load32_u8(block->hmask), high_bit, kOneBitMask);
        widen32_u8(or32_u8(low, shl32_u8(high, 2)), w);
        const F32x8 offset = broadcast8(kQ3KOffset);
#pragma GCC unroll 4
        for (int i = 0; i < kGroupChunks; ++i) {
            w[i] = mul8(broadcast8(scale[small_sub_block(g, i)]), sub8(w[i], offset));
        }
    }
};

// Q4_K and Q5_K: group g is sub-block g, the low (g even) or high nibbles of qs[32 (g / 2) ..].
template <typename Block>
struct KQuantWithMinsRow : BlockRow<Block, kKQuantBlockSize> {
    using BlockRow<Block, kKQuantBlockSize>::BlockRow;
    float scale[kLargeSubBlocks], min[kLargeSubBlocks];
    void begin_block(int64_t b) {
        this->block = this->blocks + b;
        const KQuantScalesMins sm = k_quant_scales_mins(this->block->scales);
        store8(scale, mul8(broadcast8(f16_scalar(this->block->d)), widen8_u8(sm.scales)));
        store8(min, mul8(broadcast8(f16_scalar(this->block->dmin)), widen8_u8(sm.mins)));
    }
    // Q5_K passes its fifth bits; Q4_K none.
    template <bool kFifthBit>
    void read_group(int g, Group& w) const {
        const uint8_t* qs = this->block->qs + kKQuantHalfBytes * (g / 2);
        U8x32 q = bits32_u8(load32_u8(qs), kNibbleBits * (g % 2), kNibbleMask);
        if constexpr (kFifthBit) {
            q = or32_u8(q, shl32_u8(bits32_u8(load32_u8(this->block->qh), g, kOneBitMask), kNibbleBits));
        }
        widen32_u8(q, w);
        const F32x8 scale8 = broadcast8(scale[g]), min8 = broadcast8(min[g]);
        for (F32x8& chunk : w) chunk = sub8(mul8(scale8, chunk), min8);
    }
};

struct Q4_KRow : KQuantWithMinsRow<BlockQ4_K> {
    using KQuantWithMinsRow::KQuantWithMinsRow;
    void group(int g, Group& w) const { read_group<false>(g, w); }
};

struct Q5_KRow : KQuantWithMinsRow<BlockQ5_K> {
    using KQuantWithMinsRow::KQuantWithMinsRow;
    void group(int g, Group& w) const { read_group<true>(g, w); }
};

// Q6_K: in half h, quarter j, the low 4 bits are the low (j < 2) or high nibbles of ql[64h + 32 (j & 1) ..],
// the high 2 bits are bits 2j of qh[32h ..].
struct Q6_KRow : BlockRow<BlockQ6_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    float scale[kSmallSubBlocks];
    void begin_block(int64_t b) {
        block = blocks + b;
        const F32x8 d = broadcast8(f16_scalar(block->d));
        store8(scale, mul8(d, load8_i8(block->scales)));
        store8(scale + kLanes, mul8(d, load8_i8(block->scales + kLanes)));
    }
    void group(int g, Group& w) const {
        constexpr int kQlHalfBytes = 64, kQlQuarterBytes = 32;
        const int h = half_of(g), j = quarter_of(g);
        const uint8_t* ql = block->ql + kQlHalfBytes * h + kQlQuarterBytes * (j & 1);
        const uint8_t* qh = block->qh + kKQuantHalfBytes * h;
        const U8x32 low = bits32_u8(load32_u8(ql), j >= 2 ? kNibbleBits : 0, kNibbleMask);
        const U8x32 high = bits32_u8(load32_u8(qh), 2 * j, kTwoBitMask);
        widen32_u8(or32_u8(low, shl32_u8(high, kNibbleBits)), w);
        const F32x8 offset = broadcast8(kQ6KOffset);
#pragma GCC unroll 4
        for (int i = 0; i < kGroupChunks; ++i) {
            w[i] = mul8(broadcast8(scale[small_sub_block(g, i)]), sub8(w[i], offset));
        }
    }
};

}  // namespace dendro::cpu
