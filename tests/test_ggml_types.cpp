// ggml type table, fp16/bf16 conversions (bit-exact with ggml) and Q8_0 quantization (ggml's reference).
#include <gtest/gtest.h>
#ifndef __FLT16_MAX__
#include <immintrin.h>
#endif

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/error.h"
#include "format/ggml_types.h"

namespace dendro {
namespace {

// The reference half conversions, both round-to-nearest-even: the compiler's _Float16 where it has one (gcc
// defines __FLT16_MAX__ then); else (clang 14 on x86-64 has no _Float16, and its __fp16 needs compiler-rt's
// builtins) the F16C instructions.
#ifdef __FLT16_MAX__
float reference_half_to_float(uint16_t bits) {
    _Float16 half;
    std::memcpy(&half, &bits, sizeof(bits));
    return static_cast<float>(half);
}
uint16_t reference_float_to_half(float value) {
    const auto half = static_cast<_Float16>(value);
    uint16_t bits;
    std::memcpy(&bits, &half, sizeof(bits));
    return bits;
}
#else
__attribute__((target("f16c"))) float reference_half_to_float(uint16_t bits) { return _cvtsh_ss(bits); }
__attribute__((target("f16c"))) uint16_t reference_float_to_half(float value) {
    return _cvtss_sh(value, _MM_FROUND_TO_NEAREST_INT);
}
#endif

float f32_bits(uint32_t bits) { return std::bit_cast<float>(bits); }
uint32_t bits_of(float v) { return std::bit_cast<uint32_t>(v); }

TEST(GgmlTypes, TraitsMatchGgml) {
    struct Expected {
        uint32_t id;
        const char* name;
        int64_t block_size;
        size_t type_size;
        bool supported;
    };
    const Expected table[] = {
        {0, "f32", 1, 4, true},        {1, "f16", 1, 2, true},        {8, "q8_0", 32, 34, true},
        {30, "bf16", 1, 2, true},      {2, "q4_0", 32, 18, true},    {3, "q4_1", 32, 20, true},
        {6, "q5_0", 32, 22, true},    {7, "q5_1", 32, 24, true},    {9, "q8_1", 32, 36, false},
        {10, "q2_K", 256, 84, true},  {11, "q3_K", 256, 110, true}, {12, "q4_K", 256, 144, true},
        {13, "q5_K", 256, 176, true}, {14, "q6_K", 256, 210, true}, {15, "q8_K", 256, 292, false},
        {20, "iq4_nl", 32, 18, true}, {23, "iq4_xs", 256, 136, false}, {24, "i8", 1, 1, false},
        {28, "f64", 1, 8, false},      {29, "iq1_m", 256, 56, false}, {35, "tq2_0", 256, 66, false},
        {39, "mxfp4", 32, 17, false},
    };
    for (const Expected& e : table) {
        SCOPED_TRACE(e.name);
        const auto traits = ggml_type_traits(e.id);
        ASSERT_TRUE(traits.has_value());
        EXPECT_STREQ(traits->name, e.name);
        EXPECT_EQ(traits->block_size, e.block_size);
        EXPECT_EQ(traits->type_size, e.type_size);
        EXPECT_EQ(traits->supported, e.supported);
    }
}

TEST(GgmlTypes, RemovedAndUnknownIdsHaveNoTraits) {
    for (const uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 43u, 1000u, 0xffffffffu}) {
        EXPECT_FALSE(ggml_type_traits(id).has_value()) << id;
    }
}

TEST(GgmlTypes, NamesAndRowSizes) {
    EXPECT_EQ(ggml_type_name(GgmlType::BF16), "bf16");
    EXPECT_EQ(ggml_type_name(GgmlType::Q8_0), "q8_0");
    EXPECT_EQ(ggml_row_size(GgmlType::F32, 10), 40u);
    EXPECT_EQ(ggml_row_size(GgmlType::F16, 7), 14u);
    EXPECT_EQ(ggml_row_size(GgmlType::Q8_0, 64), 68u);
    EXPECT_EQ(ggml_row_size(GgmlType::Q4_K, 512), 288u);
    EXPECT_THROW(ggml_row_size(GgmlType::Q8_0, 33), Error);
    EXPECT_THROW(ggml_row_size(GgmlType::F32, -1), Error);
    EXPECT_THROW(ggml_row_size(static_cast<GgmlType>(4), 32), Error);
}

// --- fp16 --------------------------------------------------------------------------------------------------

TEST(Fp16, DecodesSpecialValues) {
    EXPECT_EQ(bits_of(fp16_to_fp32(0x0000)), 0x00000000u);
    EXPECT_EQ(bits_of(fp16_to_fp32(0x8000)), 0x80000000u);
    EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
    EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
    EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
    EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
    EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
    EXPECT_EQ(bits_of(fp16_to_fp32(0x7c00)), 0x7f800000u);
    EXPECT_EQ(bits_of(fp16_to_fp32(0xfc00)), 0xff800000u);
    // NaNs keep sign and payload and come out quiet, as ggml's conversion gives them.
    EXPECT_EQ(bits_of(fp16_to_fp32(0x7e00)), 0x7fc00000u);
    EXPECT_EQ(bits_of(fp16_to_fp32(0x7c01)), 0x7fc02000u);
    EXPECT_EQ(bits_of(fp16_to_fp32(0xfd55)), 0xffeaa000u);
}

TEST(Fp16, DecodingMatchesTheCompilersHalfType) {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const auto bits = static_cast<uint16_t>(h);
        const float expected = reference_half_to_float(bits);
        const float got = fp16_to_fp32(bits);
        if (std::isnan(expected)) {
            ASSERT_TRUE(std::isnan(got)) << std::hex << h;
        } else {
            ASSERT_EQ(bits_of(got), bits_of(expected)) << std::hex << h;
        }
    }
}

TEST(Fp16, EveryHalfRoundTrips) {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const auto bits = static_cast<uint16_t>(h);
        const bool nan = (bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0;
        if (nan) continue;
        ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(bits)), bits) << std::hex << h;
    }
}

TEST(Fp16, EncodesEdgeCases) {
    EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
    EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
    // Every NaN becomes the canonical quiet NaN, keeping its sign (ggml's behaviour).
    EXPECT_EQ(fp32_to_fp16(f32_bits(0x7f800001)), 0x7e00);
    EXPECT_EQ(fp32_to_fp16(f32_bits(0xffc12345)), 0xfe00);
    // Overflow: 65504 is the largest finite half; 65520 is the tie with 65536 and goes to even (infinity).
    EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
    EXPECT_EQ(fp32_to_fp16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);
    EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
    EXPECT_EQ(fp32_to_fp16(-1e10f), 0xfc00);
    // Ties between neighbours round to the even mantissa: 1 + 2^-11 sits halfway between 1 and 1 + 2^-10.
    EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
    EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
    EXPECT_EQ(fp32_to_fp16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
    // Mantissa carry into the exponent: just under 2 rounds up to 2.
    EXPECT_EQ(fp32_to_fp16(std::nextafter(2.0f, 0.0f)), 0x4000);
    // Subnormals: 2^-24 is the smallest; 2^-25 ties to even (zero); 3 * 2^-25 ties to 2 * 2^-24.
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);
    EXPECT_EQ(fp32_to_fp16(-std::ldexp(1.0f, -25)), 0x8000);
    EXPECT_EQ(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
    EXPECT_EQ(fp32_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);
    EXPECT_EQ(fp32_to_fp16(5 * std::ldexp(1.0f, -25)), 0x0002);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);  // carries into the smallest normal
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -30)), 0x0000);
    EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -14)), 0x0400);
}

TEST(Fp16, EncodingMatchesTheCompilersHalfTypeOnASweepOfAllFloats) {
    // The reference float -> half conversion rounds to nearest even; sweep the fp32 bit patterns with a
    // prime stride (plus every pattern near the fp16 range boundaries, where the rounding cases live).
    constexpr uint64_t kStride = 4099;
    auto check = [](uint32_t bits) {
        const float value = f32_bits(bits);
        if (std::isnan(value)) return;
        ASSERT_EQ(fp32_to_fp16(value), reference_float_to_half(value)) << std::hex << bits;
    };
    for (uint64_t bits = 0; bits <= 0xffffffffu; bits += kStride) check(static_cast<uint32_t>(bits));
    for (const uint32_t boundary : {0x33000000u, 0x38800000u, 0x477fe000u, 0x477ff000u}) {
        for (uint32_t delta = 0; delta < 0x4000; ++delta) {
            check(boundary + delta);
            check(boundary - delta);
            check((boundary + delta) | 0x80000000u);
        }
    }
}

// --- bf16 --------------------------------------------------------------------------------------------------

TEST(Bf16, DecodesByShifting) {
    EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
    EXPECT_EQ(bf16_to_fp32(0xc040), -3.0f);
    EXPECT_EQ(bits_of(bf16_to_fp32(0x7f80)), 0x7f800000u);
    EXPECT_EQ(bits_of(bf16_to_fp32(0x0001)), 0x00010000u);  // subnormal stays subnormal
    EXPECT_EQ(bits_of(bf16_to_fp32(0xffc1)), 0xffc10000u);
}

TEST(Bf16, EncodesWithRoundToNearestEven) {
    EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x3f808000)), 0x3f80);  // tie, even stays
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x3f808001)), 0x3f81);  // just above the tie
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x3f807fff)), 0x3f80);  // just below the tie
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x7f7fffff)), 0x7f80);  // largest float rounds to infinity
    EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
    EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
    // Subnormals are rounded, not flushed.
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x00008000)), 0x0000);
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x00018000)), 0x0002);
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x00010000)), 0x0001);
}

TEST(Bf16, NanStaysQuietNan) {
    // A signalling NaN whose payload lives only in the dropped bits must not become infinity.
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x7f800001)), 0x7fc0);
    EXPECT_EQ(fp32_to_bf16(f32_bits(0xff800001)), 0xffc0);
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x7fc00000)), 0x7fc0);
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x7fa50000)), 0x7fe5);  // payload kept, quiet bit set
    EXPECT_EQ(fp32_to_bf16(f32_bits(0x7fffffff)), 0x7fff);  // no rounding carry into the sign
}

TEST(Bf16, EveryBf16RoundTrips) {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const auto bits = static_cast<uint16_t>(h);
        const float value = bf16_to_fp32(bits);
        if (std::isnan(value)) continue;
        ASSERT_EQ(fp32_to_bf16(value), bits) << std::hex << h;
    }
}

// --- rows and Q8_0 -----------------------------------------------------------------------------------------

TEST(Q8_0, BlockLayoutIsScaleThenQuants) {
    EXPECT_EQ(sizeof(BlockQ8_0), 34u);
    EXPECT_EQ(offsetof(BlockQ8_0, d), 0u);
    EXPECT_EQ(offsetof(BlockQ8_0, qs), 2u);
    EXPECT_EQ(kQ8_0BlockSize, 32);
}

TEST(Q8_0, QuantizesLikeGgmlReference) {
    // Expected values computed independently (numpy, float32 arithmetic, round half away from zero).
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = (static_cast<float>(j) - 12.3f) * 0.37f;
    x[5] = -9.0f;
    const std::vector<int> expected_q = {-64, -59, -54, -49, -43, -127, -33, -28, -22, -17, -12, -7, -2, 4, 9, 14,
                                         19,  25,  30,  35,  40,  45,   51,  56,  61,  66,  72,  77, 82, 87, 92, 98};
    BlockQ8_0 block{};
    quantize_row(GgmlType::Q8_0, x.data(), &block, 32);
    EXPECT_EQ(block.d, 0x2c89);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(block.qs[j], expected_q[j]) << j;

    // The raw bytes: d little-endian first, then the quants.
    uint8_t raw[sizeof(BlockQ8_0)];
    std::memcpy(raw, &block, sizeof(raw));
    EXPECT_EQ(raw[0], 0x89);
    EXPECT_EQ(raw[1], 0x2c);
    EXPECT_EQ(static_cast<int8_t>(raw[2]), -64);
}

TEST(Q8_0, RoundsHalfAwayFromZeroLikeRoundf) {
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f;  // d = 1 exactly, so the quants are round(x)
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    x[4] = -0.5f;
    x[5] = 1.5f;
    BlockQ8_0 block{};
    quantize_row(GgmlType::Q8_0, x.data(), &block, 32);
    EXPECT_EQ(block.d, 0x3c00);
    EXPECT_EQ(block.qs[0], 127);
    EXPECT_EQ(block.qs[1], 3);
    EXPECT_EQ(block.qs[2], -3);
    EXPECT_EQ(block.qs[3], 1);
    EXPECT_EQ(block.qs[4], -1);
    EXPECT_EQ(block.qs[5], 2);
}

TEST(Q8_0, ZeroBlockHasZeroScale) {
    const std::vector<float> x(64, 0.0f);
    std::vector<BlockQ8_0> blocks(2);
    quantize_row(GgmlType::Q8_0, x.data(), blocks.data(), 64);
    for (const BlockQ8_0& b : blocks) {
        EXPECT_EQ(b.d, 0);
        for (const int8_t q : b.qs) EXPECT_EQ(q, 0);
    }
    std::vector<float> back(64, 1.0f);
    dequantize_row(GgmlType::Q8_0, blocks.data(), back.data(), 64);
    for (const float v : back) EXPECT_EQ(v, 0.0f);
}

TEST(Q8_0, RoundTripErrorIsWithinHalfAStep) {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    constexpr int64_t n = 32 * 64;
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    std::vector<BlockQ8_0> blocks(n / 32);
    quantize_row(GgmlType::Q8_0, x.data(), blocks.data(), n);
    std::vector<float> back(n);
    dequantize_row(GgmlType::Q8_0, blocks.data(), back.data(), n);
    for (int64_t b = 0; b < n / 32; ++b) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const float d = fp16_to_fp32(blocks[b].d);
        // Half a quantization step, plus what rounding d to fp16 (relative error <= 2^-11) adds at |q| <= 127.
        const float bound = 0.5f * d + 127.0f * d * std::ldexp(1.0f, -11) + 1e-6f;
        for (int j = 0; j < 32; ++j) {
            EXPECT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), bound);
            EXPECT_EQ(back[b * 32 + j], static_cast<float>(blocks[b].qs[j]) * d);
        }
        EXPECT_NEAR(d, amax / 127.0f, amax / 127.0f * std::ldexp(1.0f, -11));
    }
}

TEST(Rows, F16AndBf16RowsConvertElementwise) {
    const std::vector<float> x = {0.0f, -1.5f, 3.14159f, 65504.0f, 1e-6f, -7e4f, 0.1f};
    std::vector<uint16_t> half(x.size());
    std::vector<float> back(x.size());
    quantize_row(GgmlType::F16, x.data(), half.data(), static_cast<int64_t>(x.size()));
    dequantize_row(GgmlType::F16, half.data(), back.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_EQ(half[i], fp32_to_fp16(x[i]));
        EXPECT_EQ(bits_of(back[i]), bits_of(fp16_to_fp32(half[i])));
    }
    quantize_row(GgmlType::BF16, x.data(), half.data(), static_cast<int64_t>(x.size()));
    dequantize_row(GgmlType::BF16, half.data(), back.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_EQ(half[i], fp32_to_bf16(x[i]));
        EXPECT_EQ(bits_of(back[i]), bits_of(bf16_to_fp32(half[i])));
    }
    std::vector<float> copy(x.size());
    quantize_row(GgmlType::F32, x.data(), copy.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(copy, x);
}

TEST(Rows, RejectUnsupportedTypesAndPartialBlocks) {
    std::vector<float> x(256, 1.0f);
    std::vector<uint8_t> out(1024);
    EXPECT_THROW(quantize_row(GgmlType::Q2_K, x.data(), out.data(), 256), Error);
    EXPECT_THROW(dequantize_row(GgmlType::Q8_1, out.data(), x.data(), 32), Error);
    EXPECT_THROW(quantize_row(GgmlType::Q8_0, x.data(), out.data(), 31), Error);
    try {
        dequantize_row(GgmlType::Q8_K, out.data(), x.data(), 256);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("q8_K"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace dendro
