// Scalar fp16 and bf16 conversions, bit-exact with ggml: round to nearest even, NaN stays a quiet NaN.
#include <bit>
#include <cmath>
#include <cstdint>

#include "format/ggml_types.h"

namespace dendro {
namespace {

constexpr uint32_t kF32SignMask = 0x80000000u;
constexpr uint32_t kF32AbsMask = 0x7fffffffu;
constexpr uint32_t kF32ExpMask = 0x7f800000u;  // also the bits of +inf
constexpr uint32_t kF32QuietBit = 0x00400000u;
constexpr int kF32MantissaBits = 23;
constexpr uint32_t kF32ImplicitBit = 1u << kF32MantissaBits;

constexpr uint16_t kF16SignMask = 0x8000u;
constexpr uint16_t kF16ExpMask = 0x7c00u;  // also the bits of +inf
constexpr uint16_t kF16MantissaMask = 0x03ffu;
constexpr uint16_t kF16CanonicalNaN = 0x7e00u;  // what ggml produces for every fp32 NaN
constexpr int kF16MantissaBits = 10;
constexpr int kF16ExpMax = 31;
// fp32 exponent bias (127) minus fp16 exponent bias (15).
constexpr uint32_t kExpBiasDelta = 112;
constexpr int kMantissaDrop = kF32MantissaBits - kF16MantissaBits;  // 13 bits dropped going to fp16
// fp16 subnormals are multiples of 2^-24.
constexpr int kF16SubnormalExponent = -24;
// |x| from this value up rounds to fp16 infinity: halfway between 65504 (largest finite) and 65536.
constexpr uint32_t kF16OverflowThreshold = 0x477ff000u;
// |x| below 2^-14 (the smallest normal fp16) becomes an fp16 subnormal or zero.
constexpr uint32_t kF16MinNormalAsF32 = 0x38800000u;

constexpr int kBf16Shift = 16;
constexpr uint16_t kBf16QuietBit = 0x0040u;
constexpr uint32_t kBf16RoundingBias = 0x7fffu;  // plus the lowest kept bit: ties go to even

// Shifts right by `shift` bits, rounding to nearest with ties to even.
uint32_t shift_right_round_even(uint32_t value, int shift) {
    const uint32_t kept = value >> shift;
    const uint32_t dropped = value & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    return (dropped > half || (dropped == half && (kept & 1u))) ? kept + 1u : kept;
}

}  // namespace

float fp16_to_fp32(uint16_t bits) {
    const uint32_t sign = static_cast<uint32_t>(bits & kF16SignMask) << kBf16Shift;
    const uint32_t exponent = (bits & kF16ExpMask) >> kF16MantissaBits;
    const uint32_t mantissa = bits & kF16MantissaMask;
    if (exponent == 0) {
        // Zero or subnormal: exactly mantissa * 2^-24, representable in fp32.
        const float magnitude = std::ldexp(static_cast<float>(mantissa), kF16SubnormalExponent);
        return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
    }
    if (exponent == kF16ExpMax) {
        const uint32_t nan_quiet = mantissa != 0 ? kF32QuietBit : 0u;
        return std::bit_cast<float>(sign | kF32ExpMask | (mantissa << kMantissaDrop) | nan_quiet);
    }
    return std::bit_cast<float>(sign | ((exponent + kExpBiasDelta) << kF32MantissaBits) |
                                (mantissa << kMantissaDrop));
}

uint16_t fp32_to_fp16(float value) {
    const uint32_t x = std::bit_cast<uint32_t>(value);
    const auto sign = static_cast<uint16_t>((x & kF32SignMask) >> kBf16Shift);
    const uint32_t magnitude = x & kF32AbsMask;
    if (magnitude > kF32ExpMask) return sign | kF16CanonicalNaN;
    if (magnitude >= kF16OverflowThreshold) return sign | kF16ExpMask;
    if (magnitude < kF16MinNormalAsF32) {
        // Result is mantissa_with_implicit_bit * 2^(exponent - 126) units of 2^-24.
        const int exponent = static_cast<int>(magnitude >> kF32MantissaBits);
        constexpr int kSubnormalShiftBase = 126;
        const int shift = kSubnormalShiftBase - exponent;
        // A shift past the 24 significant bits leaves less than half a unit: rounds to zero (so do fp32 zeros
        // and subnormals, exponent 0).
        if (exponent == 0 || shift > kF32MantissaBits + 1) return sign;
        const uint32_t significand = (magnitude & (kF32ImplicitBit - 1u)) | kF32ImplicitBit;
        // A carry out of the subnormal range yields 0x0400, the smallest normal: the encoding stays correct.
        return sign | static_cast<uint16_t>(shift_right_round_even(significand, shift));
    }
    // Normal: rebias the exponent, round away the low 13 mantissa bits; a mantissa carry bumps the exponent.
    const uint32_t rebiased = magnitude - (kExpBiasDelta << kF32MantissaBits);
    return sign | static_cast<uint16_t>(shift_right_round_even(rebiased, kMantissaDrop));
}

float bf16_to_fp32(uint16_t bits) {
    return std::bit_cast<float>(static_cast<uint32_t>(bits) << kBf16Shift);
}

uint16_t fp32_to_bf16(float value) {
    const uint32_t x = std::bit_cast<uint32_t>(value);
    if ((x & kF32AbsMask) > kF32ExpMask) {
        // NaN: truncate, keeping sign and payload, and force it quiet so truncation cannot make it infinity.
        return static_cast<uint16_t>(x >> kBf16Shift) | kBf16QuietBit;
    }
    const uint32_t lowest_kept_bit = (x >> kBf16Shift) & 1u;
    return static_cast<uint16_t>((x + kBf16RoundingBias + lowest_kept_bit) >> kBf16Shift);
}

}  // namespace dendro
