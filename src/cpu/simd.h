// Eight-lane fp32 vectors for the CPU kernels: AVX2/FMA/F16C when the compiler targets them, otherwise a
// portable fallback with the same lane semantics. Every reduction in the CPU backend goes through these
// helpers in one fixed order (8-lane accumulators fed in sequence, lanes combined by hsum8's fixed tree),
// which is what makes a token's result independent of how many tokens or rows are computed together.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "format/ggml_types.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define DENDRO_CPU_AVX2 1
#include <immintrin.h>
#endif

namespace dendro::cpu {

inline constexpr int kLanes = 8;

#if defined(DENDRO_CPU_AVX2)

struct F32x8 {
    __m256 v;
};

inline F32x8 zero8() { return {_mm256_setzero_ps()}; }
inline F32x8 broadcast8(float x) { return {_mm256_set1_ps(x)}; }
inline F32x8 load8(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store8(float* p, F32x8 a) { _mm256_storeu_ps(p, a.v); }
inline F32x8 fma8(F32x8 a, F32x8 b, F32x8 acc) { return {_mm256_fmadd_ps(a.v, b.v, acc.v)}; }
inline F32x8 mul8(F32x8 a, F32x8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline F32x8 sub8(F32x8 a, F32x8 b) { return {_mm256_sub_ps(a.v, b.v)}; }

inline float hsum8(F32x8 a) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)));
}

inline F32x8 load8_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}

inline F32x8 load8_bf16(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))};
}

inline F32x8 broadcast8_f16(uint16_t bits) { return {_mm256_set1_ps(_cvtsh_ss(bits))}; }
inline float f16_scalar(uint16_t bits) { return _cvtsh_ss(bits); }

// Lane i = byte i of `bytes` (bits 8i..8i+7), unsigned.
inline F32x8 widen8_u8(uint64_t bytes) {
    return {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(bytes))))};
}

struct U8x32 {
    __m256i v;
};
inline U8x32 load32_u8(const uint8_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
// (byte >> shift) & mask per byte; mask < 2^(8 - shift), so bits shifted in from the next byte are cleared.
inline U8x32 bits32_u8(U8x32 a, int shift, uint8_t mask) {
    const __m256i shifted = _mm256_srl_epi16(a.v, _mm_cvtsi32_si128(shift));
    return {_mm256_and_si256(shifted, _mm256_set1_epi8(static_cast<char>(mask)))};
}
// byte << shift per byte, for bytes small enough not to overflow.
inline U8x32 shl32_u8(U8x32 a, int shift) { return {_mm256_sll_epi16(a.v, _mm_cvtsi32_si128(shift))}; }
inline U8x32 or32_u8(U8x32 a, U8x32 b) { return {_mm256_or_si256(a.v, b.v)}; }
// The 16 low nibbles of p[0..15], then their 16 high nibbles.
inline U8x32 nibbles32_u8(const uint8_t* p) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i low = _mm_and_si128(bytes, mask), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    return {_mm256_set_m128i(high, low)};
}
// Byte i = table[byte i]; every byte is below 16.
inline U8x32 lookup32_u8(U8x32 index, const uint8_t* table) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table)));
    return {_mm256_shuffle_epi8(t, index.v)};
}
// Byte i = bit i of `bits` (0 or 1).
inline U8x32 bit_bytes32_u8(uint32_t bits) {
    // Byte i takes byte i / 8 of `bits`, keeps its bit i % 8, and becomes 1 where that bit is set.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0x0000000000000000));
    const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    return {_mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(1))};
}
// The 32 bytes as 4 chunks of 8 fp32 lanes, in order.
inline void widen32_u8(U8x32 a, F32x8* out) {
    const __m128i low = _mm256_castsi256_si128(a.v), high = _mm256_extracti128_si256(a.v, 1);
    out[0] = {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(low))};
    out[1] = {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(low, low)))};
    out[2] = {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(high))};
    out[3] = {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(high, high)))};
}

// e^x per lane, within 2 ulp of the correctly rounded value (Cephes' expf: x = n ln2 + r, |r| <= ln2/2,
// a degree-6 polynomial for e^r, 2^n put in the exponent). Inputs are clamped to where e^x is a normal
// float, so results below FLT_MIN come out as FLT_MIN-sized rather than 0 (harmless against any h).
inline F32x8 exp8(F32x8 x) {
    const __m256 clamped = _mm256_min_ps(_mm256_max_ps(x.v, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.37626f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(clamped, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x - n ln2, with ln2 split in two so that n * ln2_hi is exact.
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), clamped);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 r2 = _mm256_mul_ps(r, r);
    const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
    // 2^n: n + 127 in the exponent field; n is in [-126, 127] after the clamp.
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return {_mm256_mul_ps(er, _mm256_castsi256_ps(bits))};
}

inline F32x8 load8_i8(const int8_t* q) {
    int64_t bytes;
    std::memcpy(&bytes, q, sizeof(bytes));
    return {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bytes)))};
}

#else

struct F32x8 {
    float v[kLanes];
};

inline F32x8 zero8() { return F32x8{}; }
inline F32x8 broadcast8(float x) {
    F32x8 r;
    for (float& lane : r.v) lane = x;
    return r;
}
inline F32x8 load8(const float* p) {
    F32x8 r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
}
inline void store8(float* p, F32x8 a) { std::memcpy(p, a.v, sizeof(a.v)); }
inline F32x8 fma8(F32x8 a, F32x8 b, F32x8 acc) {
    for (int i = 0; i < kLanes; ++i) acc.v[i] += a.v[i] * b.v[i];
    return acc;
}
inline F32x8 mul8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] *= b.v[i];
    return a;
}
inline F32x8 sub8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] -= b.v[i];
    return a;
}
// Same tree as the AVX2 version: halves, then quarters, then the last pair.
inline float hsum8(F32x8 a) {
    const float h0 = a.v[0] + a.v[4], h1 = a.v[1] + a.v[5], h2 = a.v[2] + a.v[6], h3 = a.v[3] + a.v[7];
    return (h0 + h2) + (h1 + h3);
}
inline F32x8 load8_f16(const uint16_t* p) {
    F32x8 r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = fp16_to_fp32(p[i]);
    return r;
}
inline F32x8 load8_bf16(const uint16_t* p) {
    F32x8 r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = bf16_to_fp32(p[i]);
    return r;
}
inline F32x8 broadcast8_f16(uint16_t bits) { return broadcast8(fp16_to_fp32(bits)); }
inline float f16_scalar(uint16_t bits) { return fp16_to_fp32(bits); }
inline F32x8 widen8_u8(uint64_t bytes) {
    F32x8 r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = static_cast<float>((bytes >> (8 * i)) & 0xffu);
    return r;
}

struct U8x32 {
    uint8_t v[32];
};
inline U8x32 load32_u8(const uint8_t* p) {
    U8x32 r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
}
inline U8x32 bits32_u8(U8x32 a, int shift, uint8_t mask) {
    for (uint8_t& byte : a.v) byte = static_cast<uint8_t>((byte >> shift) & mask);
    return a;
}
inline U8x32 shl32_u8(U8x32 a, int shift) {
    for (uint8_t& byte : a.v) byte = static_cast<uint8_t>(byte << shift);
    return a;
}
inline U8x32 or32_u8(U8x32 a, U8x32 b) {
    for (int i = 0; i < 32; ++i) a.v[i] |= b.v[i];
    return a;
}
inline U8x32 nibbles32_u8(const uint8_t* p) {
    constexpr int kHalf = 16;
    U8x32 r;
    for (int i = 0; i < kHalf; ++i) {
        r.v[i] = p[i] & 0x0f;
        r.v[i + kHalf] = p[i] >> 4;
    }
    return r;
}
inline U8x32 lookup32_u8(U8x32 index, const uint8_t* table) {
    for (uint8_t& byte : index.v) byte = table[byte];
    return index;
}
inline U8x32 bit_bytes32_u8(uint32_t bits) {
    U8x32 r;
    for (int i = 0; i < 32; ++i) r.v[i] = static_cast<uint8_t>((bits >> i) & 1u);
    return r;
}
inline void widen32_u8(U8x32 a, F32x8* out) {
    for (int i = 0; i < 32; ++i) out[i / kLanes].v[i % kLanes] = static_cast<float>(a.v[i]);
}
inline F32x8 exp8(F32x8 x) {
    for (float& lane : x.v) lane = std::exp(lane);
    return x;
}

inline F32x8 load8_i8(const int8_t* q) {
    F32x8 r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = static_cast<float>(q[i]);
    return r;
}

#endif

// Loads n < 8 floats followed by zeros (the tail of a row whose length is not a multiple of 8).
inline F32x8 load8_partial(const float* p, int64_t n) {
    float padded[kLanes] = {};
    std::memcpy(padded, p, static_cast<size_t>(n) * sizeof(float));
    return load8(padded);
}

// Stores the first n < 8 lanes.
inline void store8_partial(float* p, F32x8 a, int64_t n) {
    float lanes[kLanes];
    store8(lanes, a);
    std::memcpy(p, lanes, static_cast<size_t>(n) * sizeof(float));
}

// Dot product of two fp32 vectors in the canonical order.
inline float dot_f32(const float* a, const float* b, int64_t n) {
    F32x8 acc = zero8();
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) acc = fma8(load8(a + i), load8(b + i), acc);
    if (i < n) acc = fma8(load8_partial(a + i, n - i), load8_partial(b + i, n - i), acc);
    return hsum8(acc);
}

}  // namespace dendro::cpu
