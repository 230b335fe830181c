// Readers of one weight row of a legacy quant (Q4_0, Q4_1, Q5_0, Q5_1) or k-quant (Q2_K..Q6_K) for the CPU
// matmul. begin_block(b) takes block b's scales; chunk(c) gives elements 8c..8c+7 of that block as fp32,
// bit for bit the values of the scalar reference dequantizer (ggml_quant_blocks.cpp): the same fp32 products
// in the same order. The quant bits of 8 elements are gathered with 64-bit integer operations (one byte per
// element) and widened to 8 lanes by load8_u8, so one code serves the AVX2 and the portable build.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu_simd.h"
#include "ggml_quant_blocks.h"

namespace dendro::cpu {

namespace swar {

inline constexpr uint64_t kOnePerByte = 0x0101010101010101ull;
inline constexpr uint64_t kLowNibbles = 0x0f * kOnePerByte;
inline constexpr uint64_t kLowTwoBits = 0x03 * kOnePerByte;
inline constexpr int kHighBitShift = 7;

// 8 consecutive bytes, byte i in bits 8i..8i+7 (GGUF files are little-endian, as is every host Dendro
// builds for).
inline uint64_t load(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}
inline uint64_t nibbles(uint64_t bytes, bool high) { return (bytes >> (high ? kNibbleBits : 0)) & kLowNibbles; }
inline uint64_t two_bits(uint64_t bytes, int shift) { return (bytes >> shift) & kLowTwoBits; }
inline uint64_t one_bit(uint64_t bytes, int shift) { return (bytes >> shift) & kOnePerByte; }
// Byte i = bit i of `bits` (0 or 1): the multiply copies the byte into all 8, the mask keeps bit i in byte i,
// and adding 0x7f per byte carries any set bit into the byte's top bit (no byte overflows into the next).
inline uint64_t spread_bits(uint8_t bits) {
    constexpr uint64_t kBitPerByte = 0x8040201008040201ull;
    constexpr uint64_t kBelowTop = 0x7f * kOnePerByte;
    return (((bits * kOnePerByte) & kBitPerByte) + kBelowTop) >> kHighBitShift & kOnePerByte;
}

}  // namespace swar

inline constexpr int kChunksPerLegacyBlock = static_cast<int>(kLegacyQuantBlockSize / kLanes);
inline constexpr int kChunksPerQuarter = 4;  // a k-quant quarter (32 elements) or a legacy half-block (16 bytes)
inline constexpr int kChunksPerHalf = 16;    // a k-quant half (128 elements)

// A block's quants: type Block, rows of `Block`s.
template <typename Block, int64_t BlockSize>
struct BlockRow {
    static constexpr int64_t kBlockSize = BlockSize;
    const Block* blocks = nullptr;
    const Block* block = nullptr;
    BlockRow() = default;
    explicit BlockRow(const uint8_t* row) : blocks(reinterpret_cast<const Block*>(row)) {}
};

// Low 4 bits of legacy-block elements 8c..8c+7: low nibbles of qs[0..15] for c < 2, then their high nibbles.
inline uint64_t legacy_nibbles(const uint8_t* qs, int c) {
    constexpr int kChunksPerNibbleHalf = 2;
    return swar::nibbles(swar::load(qs + kLanes * (c % kChunksPerNibbleHalf)), c >= kChunksPerNibbleHalf);
}

// Fifth bits of legacy-block elements 8c..8c+7 (bits 8c.. of qh), moved to bit 4 of each byte.
inline uint64_t legacy_fifth_bits(const uint8_t* qh, int c) { return swar::spread_bits(qh[c]) << kNibbleBits; }

struct Q4_0Row : BlockRow<BlockQ4_0, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
    }
    F32x8 chunk(int c) const {
        return mul8(d, sub8(load8_u8(legacy_nibbles(block->qs, c)), broadcast8(kQ4Offset)));
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
    F32x8 chunk(int c) const { return sub8(mul8(d, load8_u8(legacy_nibbles(block->qs, c))), minus_m); }
};

struct Q5_0Row : BlockRow<BlockQ5_0, kLegacyQuantBlockSize> {
    using BlockRow::BlockRow;
    F32x8 d;
    void begin_block(int64_t b) {
        block = blocks + b;
        d = broadcast8(f16_scalar(block->d));
    }
    F32x8 chunk(int c) const {
        const uint64_t q = legacy_nibbles(block->qs, c) | legacy_fifth_bits(block->qh, c);
        return mul8(d, sub8(load8_u8(q), broadcast8(kQ5Offset)));
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
    F32x8 chunk(int c) const {
        const uint64_t q = legacy_nibbles(block->qs, c) | legacy_fifth_bits(block->qh, c);
        return sub8(mul8(d, load8_u8(q)), minus_m);
    }
};

// Position of chunk c (0..31) of a k-quant block whose quants are laid out by half and quarter: byte offset
// of its first element within the half's 32 quant bytes, the half and the quarter.
struct KQuantChunk {
    int half, quarter, byte;
    explicit KQuantChunk(int c)
        : half(c / kChunksPerHalf), quarter(c % kChunksPerHalf / kChunksPerQuarter),
          byte(kLanes * (c % kChunksPerQuarter)) {}
};
inline constexpr int kKQuantHalfBytes = 32;  // quant bytes of a half for 2-bit planes (Q2_K, Q3_K, Q6_K's qh)
inline constexpr int kSmallSubBlocks = static_cast<int>(kKQuantBlockSize / 16);
inline constexpr int kLargeSubBlocks = static_cast<int>(kKQuantBlockSize / 32);

struct Q2_KRow : BlockRow<BlockQ2_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    float scale[kSmallSubBlocks], min[kSmallSubBlocks];
    void begin_block(int64_t b) {
        block = blocks + b;
        const float d = f16_scalar(block->d), dmin = f16_scalar(block->dmin);
        constexpr uint8_t kNibbleMask = 0x0f;
        for (int s = 0; s < kSmallSubBlocks; ++s) {
            scale[s] = d * static_cast<float>(block->scales[s] & kNibbleMask);
            min[s] = dmin * static_cast<float>(block->scales[s] >> kNibbleBits);
        }
    }
    F32x8 chunk(int c) const {
        const KQuantChunk at(c);
        const uint8_t* qs = block->qs + kKQuantHalfBytes * at.half + at.byte;
        const uint64_t q = swar::two_bits(swar::load(qs), 2 * at.quarter);
        return sub8(mul8(broadcast8(scale[c / 2]), load8_u8(q)), broadcast8(min[c / 2]));
    }
};

struct Q3_KRow : BlockRow<BlockQ3_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    float scale[kSmallSubBlocks];
    void begin_block(int64_t b) {
        block = blocks + b;
        const float d = f16_scalar(block->d);
        for (int s = 0; s < kSmallSubBlocks; ++s) scale[s] = d * static_cast<float>(q3_k_scale(block->scales, s));
    }
    F32x8 chunk(int c) const {
        constexpr int kQuartersPerHalf = 4;
        const KQuantChunk at(c);
        const uint8_t* qs = block->qs + kKQuantHalfBytes * at.half + at.byte;
        const uint64_t low = swar::two_bits(swar::load(qs), 2 * at.quarter);
        const uint64_t high =
            swar::one_bit(swar::load(block->hmask + at.byte), kQuartersPerHalf * at.half + at.quarter);
        return mul8(broadcast8(scale[c / 2]), sub8(load8_u8(low | high << 2), broadcast8(kQ3KOffset)));
    }
};

// Q4_K and Q5_K: sub-block s = c / 4 is the low (s even) or high nibbles of qs[32 (s / 2) + 8 (c % 4) ..].
template <typename Block>
struct KQuantWithMinsRow : BlockRow<Block, kKQuantBlockSize> {
    using BlockRow<Block, kKQuantBlockSize>::BlockRow;
    float scale[kLargeSubBlocks], min[kLargeSubBlocks];
    void begin_block(int64_t b) {
        this->block = this->blocks + b;
        const float d = f16_scalar(this->block->d), dmin = f16_scalar(this->block->dmin);
        for (int s = 0; s < kLargeSubBlocks; ++s) {
            const KQuantScaleMin sm = k_quant_scale_min(this->block->scales, s);
            scale[s] = d * static_cast<float>(sm.scale);
            min[s] = dmin * static_cast<float>(sm.min);
        }
    }
    static int sub_block(int c) { return c / kChunksPerQuarter; }
    static int quant_byte(int c) { return kKQuantHalfBytes * (sub_block(c) / 2) + kLanes * (c % kChunksPerQuarter); }
    uint64_t low_bits(int c) const {
        return swar::nibbles(swar::load(this->block->qs + quant_byte(c)), sub_block(c) % 2);
    }
    F32x8 value(int c, uint64_t q) const {
        return sub8(mul8(broadcast8(scale[sub_block(c)]), load8_u8(q)), broadcast8(min[sub_block(c)]));
    }
};

struct Q4_KRow : KQuantWithMinsRow<BlockQ4_K> {
    using KQuantWithMinsRow::KQuantWithMinsRow;
    F32x8 chunk(int c) const { return value(c, low_bits(c)); }
};

struct Q5_KRow : KQuantWithMinsRow<BlockQ5_K> {
    using KQuantWithMinsRow::KQuantWithMinsRow;
    F32x8 chunk(int c) const {
        const uint64_t fifth = swar::one_bit(swar::load(block->qh + kLanes * (c % kChunksPerQuarter)), sub_block(c));
        return value(c, low_bits(c) | fifth << kNibbleBits);
    }
};

struct Q6_KRow : BlockRow<BlockQ6_K, kKQuantBlockSize> {
    using BlockRow::BlockRow;
    float scale[kSmallSubBlocks];
    void begin_block(int64_t b) {
        block = blocks + b;
        const float d = f16_scalar(block->d);
        for (int s = 0; s < kSmallSubBlocks; ++s) scale[s] = d * static_cast<float>(block->scales[s]);
    }
    F32x8 chunk(int c) const {
        constexpr int kQlHalfBytes = 64, kQlQuarterBytes = 32;
        const KQuantChunk at(c);
        const uint8_t* ql = block->ql + kQlHalfBytes * at.half + kQlQuarterBytes * (at.quarter & 1) + at.byte;
        const uint64_t low = swar::nibbles(swar::load(ql), at.quarter >= 2);
        const uint8_t* qh = block->qh + kKQuantHalfBytes * at.half + at.byte;
        const uint64_t high = swar::two_bits(swar::load(qh), 2 * at.quarter);
        return mul8(broadcast8(scale[c / 2]), sub8(load8_u8(low | high << kNibbleBits), broadcast8(kQ6KOffset)));
    }
};

}  // namespace dendro::cpu
