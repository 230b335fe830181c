// Scalar reference dequantizers of ggml's legacy quants and k-quants (layouts in ggml_quant_blocks.h).
// The products of an fp16 scale with the integer sub-block scales and quants are exact in fp32 (at most
// 11 + 6 + 5 = 22 significant bits), except Q6_K's (11 + 8 + 6), which is rounded once and added to nothing;
// so each value is rounded at most once and the results are exactly ggml's and gguf-py's, whether or not a
// compiler fuses a multiply with the add or subtract that follows it.
#include "format/ggml_quant_blocks.h"

namespace dendro {
namespace {

constexpr uint8_t kNibbleMask = 0x0f;
constexpr int kHalf = 128, kQuarter = 32, kSmallSubBlock = 16;
constexpr int kSubBlocksPerWord = 8;

// value = scale * q - min (k-quants with mins); also value = scale * q + m with min = -m.
float scaled_minus(float scale, int q, float min) {
    const float scaled = scale * static_cast<float>(q);
    return scaled - min;
}

int q5_high_bit(uint32_t qh, int j) { return static_cast<int>((qh >> j) & 1u) << kNibbleBits; }

}  // namespace

void dequantize_q4_0(const BlockQ4_0* blocks, float* dst, int64_t n_blocks) {
    constexpr int kHalfBlock = kLegacyQuantBlockSize / 2;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kLegacyQuantBlockSize) {
        const float d = fp16_to_fp32(blocks[b].d);
        for (int j = 0; j < kHalfBlock; ++j) {
            dst[j] = d * static_cast<float>((blocks[b].qs[j] & kNibbleMask) - kQ4Offset);
            dst[j + kHalfBlock] = d * static_cast<float>((blocks[b].qs[j] >> kNibbleBits) - kQ4Offset);
        }
    }
}

void dequantize_q4_1(const BlockQ4_1* blocks, float* dst, int64_t n_blocks) {
    constexpr int kHalfBlock = kLegacyQuantBlockSize / 2;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kLegacyQuantBlockSize) {
        const float d = fp16_to_fp32(blocks[b].d), minus_m = -fp16_to_fp32(blocks[b].m);
        for (int j = 0; j < kHalfBlock; ++j) {
            dst[j] = scaled_minus(d, blocks[b].qs[j] & kNibbleMask, minus_m);
            dst[j + kHalfBlock] = scaled_minus(d, blocks[b].qs[j] >> kNibbleBits, minus_m);
        }
    }
}

void dequantize_q5_0(const BlockQ5_0* blocks, float* dst, int64_t n_blocks) {
    constexpr int kHalfBlock = kLegacyQuantBlockSize / 2;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kLegacyQuantBlockSize) {
        const float d = fp16_to_fp32(blocks[b].d);
        const uint32_t qh = load_le32(blocks[b].qh);
        for (int j = 0; j < kHalfBlock; ++j) {
            const int q0 = ((blocks[b].qs[j] & kNibbleMask) | q5_high_bit(qh, j)) - kQ5Offset;
            const int q1 = ((blocks[b].qs[j] >> kNibbleBits) | q5_high_bit(qh, j + kHalfBlock)) - kQ5Offset;
            dst[j] = d * static_cast<float>(q0);
            dst[j + kHalfBlock] = d * static_cast<float>(q1);
        }
    }
}

void dequantize_q5_1(const BlockQ5_1* blocks, float* dst, int64_t n_blocks) {
    constexpr int kHalfBlock = kLegacyQuantBlockSize / 2;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kLegacyQuantBlockSize) {
        const float d = fp16_to_fp32(blocks[b].d), minus_m = -fp16_to_fp32(blocks[b].m);
        const uint32_t qh = load_le32(blocks[b].qh);
        for (int j = 0; j < kHalfBlock; ++j) {
            const int q0 = (blocks[b].qs[j] & kNibbleMask) | q5_high_bit(qh, j);
            const int q1 = (blocks[b].qs[j] >> kNibbleBits) | q5_high_bit(qh, j + kHalfBlock);
            dst[j] = scaled_minus(d, q0, minus_m);
            dst[j + kHalfBlock] = scaled_minus(d, q1, minus_m);
        }
    }
}

void dequantize_iq4_nl(const BlockIQ4_NL* blocks, float* dst, int64_t n_blocks) {
    constexpr int kHalfBlock = kLegacyQuantBlockSize / 2;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kLegacyQuantBlockSize) {
        const float d = fp16_to_fp32(blocks[b].d);
        for (int j = 0; j < kHalfBlock; ++j) {
            dst[j] = d * static_cast<float>(kIQ4NLValues[blocks[b].qs[j] & kNibbleMask]);
            dst[j + kHalfBlock] = d * static_cast<float>(kIQ4NLValues[blocks[b].qs[j] >> kNibbleBits]);
        }
    }
}

void dequantize_q2_k(const BlockQ2_K* blocks, float* dst, int64_t n_blocks) {
    constexpr uint8_t kTwoBitMask = 0x03;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kKQuantBlockSize) {
        const BlockQ2_K& block = blocks[b];
        const float d = fp16_to_fp32(block.d), dmin = fp16_to_fp32(block.dmin);
        for (int e = 0; e < kKQuantBlockSize; ++e) {
            const int h = e / kHalf, j = (e % kHalf) / kQuarter, l = e % kQuarter;
            const uint8_t packed_scale = block.scales[e / kSmallSubBlock];
            const float scale = d * static_cast<float>(packed_scale & kNibbleMask);
            const float min = dmin * static_cast<float>(packed_scale >> kNibbleBits);
            dst[e] = scaled_minus(scale, (block.qs[kQuarter * h + l] >> (2 * j)) & kTwoBitMask, min);
        }
    }
}

void dequantize_q3_k(const BlockQ3_K* blocks, float* dst, int64_t n_blocks) {
    constexpr uint8_t kTwoBitMask = 0x03;
    constexpr int kQuartersPerHalf = kHalf / kQuarter;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kKQuantBlockSize) {
        const BlockQ3_K& block = blocks[b];
        const float d = fp16_to_fp32(block.d);
        const Q3KScales scales = q3_k_scales(block.scales);
        for (int e = 0; e < kKQuantBlockSize; ++e) {
            const int h = e / kHalf, j = (e % kHalf) / kQuarter, l = e % kQuarter;
            const int s = e / kSmallSubBlock;
            const int unsigned_scale = byte_of(s < kSubBlocksPerWord ? scales.low : scales.high, s % kSubBlocksPerWord);
            const float scale = d * static_cast<float>(unsigned_scale - kQ3KScaleOffset);
            const int low = (block.qs[kQuarter * h + l] >> (2 * j)) & kTwoBitMask;
            const int high = (block.hmask[l] >> (kQuartersPerHalf * h + j)) & 1;
            dst[e] = scale * static_cast<float>((low | (high << 2)) - kQ3KOffset);
        }
    }
}

void dequantize_q4_k(const BlockQ4_K* blocks, float* dst, int64_t n_blocks) {
    for (int64_t b = 0; b < n_blocks; ++b, dst += kKQuantBlockSize) {
        const BlockQ4_K& block = blocks[b];
        const float d = fp16_to_fp32(block.d), dmin = fp16_to_fp32(block.dmin);
        const KQuantScalesMins sm = k_quant_scales_mins(block.scales);
        for (int e = 0; e < kKQuantBlockSize; ++e) {
            const int s = e / kQuarter, l = e % kQuarter;
            const uint8_t byte = block.qs[kQuarter * (s / 2) + l];
            const int q = (s % 2 == 0 ? byte : byte >> kNibbleBits) & kNibbleMask;
            dst[e] = scaled_minus(d * static_cast<float>(byte_of(sm.scales, s)), q,
                                  dmin * static_cast<float>(byte_of(sm.mins, s)));
        }
    }
}

void dequantize_q5_k(const BlockQ5_K* blocks, float* dst, int64_t n_blocks) {
    for (int64_t b = 0; b < n_blocks; ++b, dst += kKQuantBlockSize) {
        const BlockQ5_K& block = blocks[b];
        const float d = fp16_to_fp32(block.d), dmin = fp16_to_fp32(block.dmin);
        const KQuantScalesMins sm = k_quant_scales_mins(block.scales);
        for (int e = 0; e < kKQuantBlockSize; ++e) {
            const int s = e / kQuarter, l = e % kQuarter;
            const uint8_t byte = block.qs[kQuarter * (s / 2) + l];
            const int low = (s % 2 == 0 ? byte : byte >> kNibbleBits) & kNibbleMask;
            const int q = low | (((block.qh[l] >> s) & 1) << kNibbleBits);
            dst[e] = scaled_minus(d * static_cast<float>(byte_of(sm.scales, s)), q,
                                  dmin * static_cast<float>(byte_of(sm.mins, s)));
        }
    }
}

void dequantize_q6_k(const BlockQ6_K* blocks, float* dst, int64_t n_blocks) {
    constexpr uint8_t kTwoBitMask = 0x03;
    constexpr int kHalfQlBytes = kHalf / 2;
    for (int64_t b = 0; b < n_blocks; ++b, dst += kKQuantBlockSize) {
        const BlockQ6_K& block = blocks[b];
        const float d = fp16_to_fp32(block.d);
        for (int e = 0; e < kKQuantBlockSize; ++e) {
            const int h = e / kHalf, j = (e % kHalf) / kQuarter, l = e % kQuarter;
            const uint8_t ql = block.ql[kHalfQlBytes * h + kQuarter * (j & 1) + l];
            const int low = (j < 2 ? ql : ql >> kNibbleBits) & kNibbleMask;
            const int high = (block.qh[kQuarter * h + l] >> (2 * j)) & kTwoBitMask;
            const float scale = d * static_cast<float>(block.scales[e / kSmallSubBlock]);
            dst[e] = scale * static_cast<float>((low | (high << kNibbleBits)) - kQ6KOffset);
        }
    }
}

}  // namespace dendro
