// Eight-lane fp32 vectors for the CPU kernels: AVX2/FMA/F16C when the compiler targets them, otherwise a
// portable fallback with the same lane semantics. Every reduction in the CPU backend goes through these
// helpers in one fixed order (8-lane accumulators fed in sequence, lanes combined by hsum8's fixed tree, or
// with VNNI's rows-in-lanes tiles one lane per output fed block by block), which is what makes a token's
// result independent of how many tokens or rows are computed together.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "format/ggml_quant_blocks.h"
#include "format/ggml_types.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define DENDRO_CPU_AVX2 1
// GCC 12 flags the undefined vector that the unmasked AVX-512 intrinsics pass through as maybe
// uninitialized where they are inlined (GCC bug 105593, fixed in 13): a false warning, silenced for the
// header alone (clang, which the fuzz builds use, has no such warning).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
// AVX-512 VNNI on 256-bit vectors: the 8-bit dot products in one instruction each; with AVX-512BW (every
// CPU with VNNI has it) the k-quant decode also takes 512-bit vectors (quant_rows.h).
#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define DENDRO_CPU_VNNI 1
#endif
// 512-bit float registers, each holding two 8-lane vectors (the float batch tiles, matmul.cpp).
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define DENDRO_CPU_AVX512 1
#endif
#endif

namespace dendro::cpu {

inline constexpr int kLanes = 8;

// Cache lines asked for ahead of use: the line of p, or those of [p, p + n), into the levels kLocality names
// (__builtin_prefetch's: 3 every level, 2 L2 and beyond). p may lie past an array (the next tile of the last
// one): a prefetch never faults, so the address is an integer.
inline constexpr uintptr_t kCacheLine = 64;
template <int kLocality>
inline void prefetch_line(uintptr_t p) {
    __builtin_prefetch(reinterpret_cast<const void*>(p), 0, kLocality);
}
template <int kLocality>
inline void prefetch_lines(uintptr_t p, uintptr_t n) {
    for (uintptr_t line = p & ~(kCacheLine - 1); line < p + n; line += kCacheLine) prefetch_line<kLocality>(line);
}
// Streamed weights are asked for into L2, not L1 (prefetcht1): the lines are used a tile later, and asking
// for them in L1 evicts the lines in use (measured: twice the streaming rate for Q8_0 and Q6_K).
inline constexpr int kPrefetchToL2 = 2;
// How far ahead a stream asks for its lines. One matrix tile on was too close for short rows: 8 Q4_K rows of
// 768 are 3.4 KB, and with so little asked for ahead a core drew 13 GB/s from DRAM where Q8_0's 6.5 KB drew
// 20 (one token, one Zen 4 core; with 8 KB Q4_K's decode rate rose by 1.36x, Q5_K's 1.25x, Q4_0's 1.15x,
// Q8_0's 1.09x, and 1.26x for Q4_K on two cores; 16 and 32 KB were no better).
inline constexpr size_t kPrefetchAheadBytes = 8192;
// Vector registers the compiler may use: AVX-512 adds 16 to AVX2's 16 (for 256-bit vectors too).
#if defined(__AVX512F__) && defined(__AVX512VL__)
inline constexpr int kVectorRegisters = 32;
#else
inline constexpr int kVectorRegisters = 16;
#endif

#if defined(DENDRO_CPU_AVX2)

struct F32x8 {
    __m256 v;
};

inline F32x8 zero8() { return {_mm256_setzero_ps()}; }
// Makes the compiler hold v in a register: a value loaded once for several FMAs is otherwise reloaded as
// each one's memory operand (for an F32 batch tile, 3 loads a row chunk instead of 1).
inline void keep_in_register(F32x8& v) { asm("" : "+x"(v.v)); }
inline F32x8 broadcast8(float x) { return {_mm256_set1_ps(x)}; }
inline F32x8 load8(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store8(float* p, F32x8 a) { _mm256_storeu_ps(p, a.v); }
inline F32x8 fma8(F32x8 a, F32x8 b, F32x8 acc) { return {_mm256_fmadd_ps(a.v, b.v, acc.v)}; }
inline F32x8 mul8(F32x8 a, F32x8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline F32x8 sub8(F32x8 a, F32x8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline F32x8 add8(F32x8 a, F32x8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline F32x8 div8(F32x8 a, F32x8 b) { return {_mm256_div_ps(a.v, b.v)}; }

inline float hsum8(F32x8 a) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)));
}

inline F32x8 load8_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}

// bf16 is the top half of an fp32: the 8 values loaded into both 128-bit halves and each put in the high
// half of a lane with zeros below, one shuffle (a widening and a shift took two vector operations, the
// shift on a pipe the batch tile's FMAs need: BF16 batches 42 -> 51 GMAC/s on one core).
inline F32x8 load8_bf16(const uint16_t* p) {
    constexpr char kZero = static_cast<char>(0x80);
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i to_high_halves = _mm256_setr_epi8(kZero, kZero, 0, 1, kZero, kZero, 2, 3, kZero, kZero, 4, 5, kZero, kZero, 6, 7,
                                                    kZero, kZero, 8, 9, kZero, kZero, 10, 11, kZero, kZero, 12, 13, kZero, kZero, 14, 15);
    return {_mm256_castsi256_ps(_mm256_shuffle_epi8(both, to_high_halves))};
}

#if defined(DENDRO_CPU_AVX512)
// Two 8-lane vectors in the halves of one 512-bit register, each computed on exactly as an F32x8 is: the
// float batch tile keeps two rows' accumulators in one register, so that one instruction does what two
// did (Intel's cores have two 512-bit FMA pipes, so twice the FMA rate; Zen 4's split a 512-bit FMA in two).
struct F32x8Pair {
    __m512 v;
};
inline F32x8Pair zero8_pair() { return {_mm512_setzero_ps()}; }
inline void keep_in_register(F32x8Pair& v) { asm("" : "+v"(v.v)); }
inline F32x8Pair pair8(F32x8 low, F32x8 high) { return {_mm512_insertf32x8(_mm512_zextps256_ps512(low.v), high.v, 1)}; }
// Zero-masked extractions: the unmasked ones pass GCC 12 an undefined vector that it warns of where they are
// inlined (bug 105593, as above); they run once a tile.
inline F32x8 low8(F32x8Pair a) { return {_mm512_maskz_extractf32x8_ps(0xFF, a.v, 0)}; }
inline F32x8 high8(F32x8Pair a) { return {_mm512_maskz_extractf32x8_ps(0xFF, a.v, 1)}; }
inline F32x8Pair fma8_pair(F32x8Pair a, F32x8Pair b, F32x8Pair acc) { return {_mm512_fmadd_ps(a.v, b.v, acc.v)}; }
// The 8 floats at p in both halves (one load: the broadcast is the load's).
inline F32x8Pair load8_twice(const float* p) { return {_mm512_broadcast_f32x8(_mm256_loadu_ps(p))}; }
inline F32x8Pair load8_pair(const float* low, const float* high) { return pair8(load8(low), load8(high)); }
// 8 fp16 (bf16) values from each of two places: one conversion of the 16.
inline __m256i load8_pair_u16(const uint16_t* low, const uint16_t* high) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(low))),
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(high)), 1);
}
inline F32x8Pair load8_pair_f16(const uint16_t* low, const uint16_t* high) {
    return {_mm512_cvtph_ps(load8_pair_u16(low, high))};
}
// bf16 element i into the high half of lane i, zeros below: one permute with a zeroing mask.
inline F32x8Pair load8_pair_bf16(const uint16_t* low, const uint16_t* high) {
    constexpr __mmask32 kHighHalves = 0xAAAAAAAA;
    const __m512i element_of_lane = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0, 7, 0, 6, 0, 5, 0,
                                                     4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
    const __m512i values = _mm512_zextsi256_si512(load8_pair_u16(low, high));
    return {_mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(kHighHalves, element_of_lane, values))};
}
#endif

inline float f16_scalar(uint16_t bits) { return _cvtsh_ss(bits); }
// Eight fp16 values in a register (the rows-in-lanes tiles gather them), as fp32.
inline F32x8 f16x8_to_f32(__m128i bits) { return {_mm256_cvtph_ps(bits)}; }


struct U8x32 {
    __m256i v;
};
inline U8x32 load32_u8(const uint8_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
// (byte >> shift) & mask per byte; mask < 2^(8 - shift), so bits shifted in from the next byte are cleared.
inline U8x32 bits32_u8(U8x32 a, int shift, uint8_t mask) {
    const __m256i shifted = _mm256_srl_epi16(a.v, _mm_cvtsi32_si128(shift));
    return {_mm256_and_si256(shifted, _mm256_set1_epi8(static_cast<char>(mask)))};
}
// ((byte >> from) & mask) << to per byte, in one shift and one mask (a field moved within its byte: the
// bits a 16-bit shift brings in from the neighbouring byte land outside it).
inline U8x32 move_bits32_u8(U8x32 a, int from, int to, uint8_t mask) {
    const __m256i shifted = to >= from ? _mm256_sll_epi16(a.v, _mm_cvtsi32_si128(to - from))
                                       : _mm256_srl_epi16(a.v, _mm_cvtsi32_si128(from - to));
    return {_mm256_and_si256(shifted, _mm256_set1_epi8(static_cast<char>(mask << to)))};
}
inline U8x32 or32_u8(U8x32 a, U8x32 b) { return {_mm256_or_si256(a.v, b.v)}; }
// The 16 low nibbles of p[0..15], then their 16 high nibbles.
inline U8x32 nibbles32_u8(const uint8_t* p) {
    // The 16 bytes in both halves, the high half shifted down by a nibble, then the low nibbles kept.
    const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i halves = _mm256_blend_epi32(bytes, _mm256_srli_epi16(bytes, 4), 0xf0);
    return {_mm256_and_si256(halves, _mm256_set1_epi8(0x0f))};
}
// Byte i = `value` where bit i of `bits` is set, else 0.
inline U8x32 bit_bytes32_u8(uint32_t bits, uint8_t value) {
    // Byte i takes byte i / 8 of `bits`, keeps its bit i % 8, and becomes all ones where that bit is set.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0x0000000000000000));
    const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    return {_mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                             _mm256_set1_epi8(static_cast<char>(value)))};
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

// ln x per lane for finite x > 0, within a few ulp (Cephes' logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
// a degree-9 polynomial in m - 1, e ln2 added in two parts).
inline F32x8 log8(F32x8 x) {
    const __m256i bits = _mm256_castps_si256(x.v);
    // m in [1/2, 1) and its exponent e, then m < sqrt(1/2) moved to [sqrt(1/2), sqrt(2)) with e - 1.
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                                   _mm256_set1_epi32(0x3f000000)));
    const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
    e = _mm256_sub_ps(e, _mm256_and_ps(small, _mm256_set1_ps(1.0f)));
    m = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(small, m)), _mm256_set1_ps(1.0f));
    const __m256 z = _mm256_mul_ps(m, m);
    __m256 p = _mm256_set1_ps(7.0376836292e-2f);
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-1.1514610310e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(1.1676998740e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-1.2420140846e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(1.4249322787e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-1.6668057665e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(2.0000714765e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-2.4999993993e-1f));
    p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(3.3333331174e-1f));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, m), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    return {_mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y))};
}

// Per-lane select and comparisons (all-ones lanes where true), for the vector softplus.
inline F32x8 select8(F32x8 mask, F32x8 if_set, F32x8 if_clear) { return {_mm256_blendv_ps(if_clear.v, if_set.v, mask.v)}; }
inline F32x8 greater8(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline F32x8 equal8(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline F32x8 is_nan8(F32x8 a) { return {_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }

// The 8 x 8 transpose: lane j of v[i] becomes lane i of v[j]. Always inlined: called out of line, its
// operands go through memory (measured: a quarter of a Mamba-2 Q8_0 prefill in the call).
[[gnu::always_inline]] inline void transpose8x8(F32x8* v) {
    __m256 a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_ps(v[i].v, v[i + 1].v);
        a[i + 1] = _mm256_unpackhi_ps(v[i].v, v[i + 1].v);
    }
    for (int i = 0; i < 8; i += 4) {
        b[i] = _mm256_shuffle_ps(a[i], a[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        b[i + 1] = _mm256_shuffle_ps(a[i], a[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        b[i + 2] = _mm256_shuffle_ps(a[i + 1], a[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        b[i + 3] = _mm256_shuffle_ps(a[i + 1], a[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        v[i] = {_mm256_permute2f128_ps(b[i], b[i + 4], 0x20)};
        v[i + 4] = {_mm256_permute2f128_ps(b[i], b[i + 4], 0x31)};
    }
}



// Integer dot products of quantized weights with 8-bit activations (see quant_rows.h). I8x32 holds 32 signed
// bytes, I32x8 eight int32 lanes; lane k of a 32-element dot is the sum over elements 4k..4k+3, exact.
struct I8x32 {
    __m256i v;
};
struct I32x8 {
    __m256i v;
};
inline I32x8 zero8_i32() { return {_mm256_setzero_si256()}; }
inline I32x8 add8_i32(I32x8 a, I32x8 b) { return {_mm256_add_epi32(a.v, b.v)}; }
// a - (b << shift): the offset term of the types whose quants mean q - 2^shift.
inline I32x8 sub_shifted8_i32(I32x8 a, I32x8 b, int shift) {
    return {_mm256_sub_epi32(a.v, _mm256_sll_epi32(b.v, _mm_cvtsi32_si128(shift)))};
}
inline F32x8 to_f32(I32x8 a) { return {_mm256_cvtepi32_ps(a.v)}; }
inline I8x32 load32_i8(const int8_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
// q + 128 per byte, as unsigned bytes (the sign bit flipped).
inline U8x32 plus128_u8(I8x32 q) { return {_mm256_xor_si256(q.v, _mm256_set1_epi8(static_cast<char>(0x80)))}; }
// Byte i = table[byte i] as a signed value; every byte is below 16.
inline I8x32 lookup32_i8(U8x32 index, const int8_t* table) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table)));
    return {_mm256_shuffle_epi8(t, index.v)};
}
// Pairwise u*x sums as int16. Callers keep u <= 63 (or |u| <= 128 through the sign trick) so that no pair
// saturates against |x| <= 127.
inline __m256i pair_dots_u8_i8(__m256i u, __m256i x) { return _mm256_maddubs_epi16(u, x); }
// acc + the dot of unsigned bytes u with signed bytes x, lane k taking bytes 4k..4k+3. With VNNI that is one
// instruction; without, the pairwise int16 sums (which cannot saturate for the callers' ranges) are added
// in pairs: the same exact integers either way.
inline __m256i add_dot_u8_i8(__m256i acc, __m256i u, __m256i x) {
#if defined(DENDRO_CPU_VNNI)
    return _mm256_dpbusd_epi32(acc, u, x);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pair_dots_u8_i8(u, x), _mm256_set1_epi16(1)));
#endif
}
#if defined(DENDRO_CPU_VNNI)
// For products with weight rows in the lanes (matmul.cpp): v[k] lane r becomes bytes 4k..4k+3 of v[r] (the
// 8 x 8 transpose of 32-bit groups), so that lane r of a dot against 4 broadcast activation bytes is row r's.
[[gnu::always_inline]] inline void transpose_groups8x8(__m256i* v) {
    F32x8 lanes[kLanes];
    for (int i = 0; i < kLanes; ++i) lanes[i] = {_mm256_castsi256_ps(v[i])};
    transpose8x8(lanes);
    for (int i = 0; i < kLanes; ++i) v[i] = _mm256_castps_si256(lanes[i].v);
}
// The 8 x 4 transpose of 32-bit groups: out[k] lane r = bytes 4k..4k+3 of the 16 at rows[r] (rows 0-3 in the
// low 128 bits, 4-7 in the high, then a 4 x 4 transpose within each half: 12 shuffles where widening the
// rows to 32 bytes first takes 24 and the widening).
[[gnu::always_inline]] inline void transpose_groups8x4(const __m128i* rows, __m256i* out) {
    __m256i pairs[4];
    for (int i = 0; i < 4; ++i) pairs[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(rows[i]), rows[i + 4], 1);
    const __m256i a0 = _mm256_unpacklo_epi32(pairs[0], pairs[1]), a1 = _mm256_unpackhi_epi32(pairs[0], pairs[1]);
    const __m256i a2 = _mm256_unpacklo_epi32(pairs[2], pairs[3]), a3 = _mm256_unpackhi_epi32(pairs[2], pairs[3]);
    out[0] = _mm256_unpacklo_epi64(a0, a2);
    out[1] = _mm256_unpackhi_epi64(a0, a2);
    out[2] = _mm256_unpacklo_epi64(a1, a3);
    out[3] = _mm256_unpackhi_epi64(a1, a3);
}
[[gnu::always_inline]] inline void transpose_groups8x4(const uint8_t* const* rows, __m256i* out) {
    __m128i loaded[kLanes];
    for (int i = 0; i < kLanes; ++i) loaded[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i]));
    transpose_groups8x4(loaded, out);
}
// Lane r = the sum of v[r]'s lanes, exact: two levels of pairwise adds, then the 128-bit halves.
inline __m256i lane_totals8(const I32x8* v) {
    const __m256i a0 = _mm256_hadd_epi32(v[0].v, v[1].v), a1 = _mm256_hadd_epi32(v[2].v, v[3].v);
    const __m256i a2 = _mm256_hadd_epi32(v[4].v, v[5].v), a3 = _mm256_hadd_epi32(v[6].v, v[7].v);
    const __m256i b0 = _mm256_hadd_epi32(a0, a1), b1 = _mm256_hadd_epi32(a2, a3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31));
}
// 512-bit vectors from and to halves.
inline __m512i wide_from_halves(__m256i low, __m256i high) { return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1); }
inline __m512i wide_repeat(__m256i v) { return _mm512_broadcast_i64x4(v); }
inline __m512i wide_repeat_low_qword(__m128i v) { return _mm512_broadcastq_epi64(v); }
inline __m256i wide_low_half(__m512i v) { return _mm512_castsi512_si256(v); }
inline __m256i wide_high_half(__m512i v) { return _mm512_extracti64x4_epi64(v, 1); }
// `low` in every element of the low 256 bits, `high` in the high 256 bits.
inline __m512i wide_halves_u8(uint8_t low, uint8_t high) {
    return wide_from_halves(_mm256_set1_epi8(static_cast<char>(low)), _mm256_set1_epi8(static_cast<char>(high)));
}
inline __m512i wide_halves_u16(uint16_t low, uint16_t high) {
    return wide_from_halves(_mm256_set1_epi16(static_cast<short>(low)), _mm256_set1_epi16(static_cast<short>(high)));
}
// acc + u (unsigned bytes, row r in lane r) dotted with the same 4 signed bytes x[0..3] in every lane.
inline __m256i add_dot_u8_broadcast_i8(__m256i acc, __m256i u, const int8_t* x) {
    int32_t group;
    std::memcpy(&group, x, sizeof(group));
    return _mm256_dpbusd_epi32(acc, u, _mm256_set1_epi32(group));
}
#endif
// acc + sum over int16 pairs of a * b, lane k taking elements 2k and 2k + 1.
inline __m256i add_dot_i16(__m256i acc, __m256i a, __m256i b) {
#if defined(DENDRO_CPU_VNNI)
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}
// The 32-element dot of unsigned quants u <= 63 with activations x.
inline I32x8 dot32_u8_i8(U8x32 u, const int8_t* x) {
    return {add_dot_u8_i8(_mm256_setzero_si256(), u.v, load32_i8(x).v)};
}
// The 32-element dot of signed weights w with activations x: |w| times x with w's sign (the sign trick).
inline I32x8 dot32_i8_i8(I8x32 w, const int8_t* x) {
    const __m256i signed_x = _mm256_sign_epi8(load32_i8(x).v, w.v);
    return {add_dot_u8_i8(_mm256_setzero_si256(), _mm256_abs_epi8(w.v), signed_x)};
}
// acc + the dot of unsigned quants u <= 63 with x, elements 0..15 weighted by scale_pair[0] and 16..31 by
// scale_pair[1] (two k-quant sub-blocks of 16, or one of 32 with equal scales): lanes 0..3 take the first
// sub-block, 4..7 the second.
template <bool kEqualPair = false>
inline I32x8 add_scaled_dot32_u8_i8(I32x8 acc, U8x32 u, const int8_t* x, const int16_t* scale_pair) {
    int32_t pair;
    std::memcpy(&pair, scale_pair, sizeof(pair));
    // Both 128-bit halves hold the pair; the low half repeats its first int16, the high half its second
    // (the broadcast pair itself when they are equal: a sub-block of 32).
    __m256i scales = _mm256_set1_epi32(pair);
    if constexpr (!kEqualPair) {
        scales = _mm256_shuffle_epi8(scales, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                                              2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
    }
    return {add_dot_i16(acc.v, pair_dots_u8_i8(u.v, load32_i8(x).v), scales)};
}
// Sub-block scales as int16: out[i] = byte i of (first8, next8) minus bias; out[i] = int8 bytes[i]; and
// out[2i] = out[2i + 1] = byte i of bytes8 (a scale per 32 elements, given per 16).
inline void widen16_u8_i16(uint64_t first8, uint64_t next8, int16_t bias, int16_t* out) {
    const __m256i wide = _mm256_cvtepu8_epi16(_mm_set_epi64x(static_cast<int64_t>(next8), static_cast<int64_t>(first8)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_sub_epi16(wide, _mm256_set1_epi16(bias)));
}
inline void widen16_i8_i16(const int8_t* bytes, int16_t* out) {
    const __m128i narrow = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_cvtepi8_epi16(narrow));
}
inline void widen8_twice_u8_i16(uint64_t bytes8, int16_t* out) {
    const __m128i narrow = _mm_cvtsi64_si128(static_cast<int64_t>(bytes8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(narrow, narrow)));
}
// sum of a[i] * b[i] over 16 int16 pairs, lane k holding elements 2k and 2k + 1.
inline I32x8 dot16_i16(const int16_t* a, const int16_t* b) {
    return {add_dot_i16(_mm256_setzero_si256(), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)))};
}

// For quantizing activations: |a| per lane, the largest lane, and 32 values rounded to the nearest integer
// (ties to even, the default rounding mode; |values| <= 127) stored as bytes in order.
inline F32x8 abs8(F32x8 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline F32x8 max8(F32x8 a, F32x8 b) { return {_mm256_max_ps(a.v, b.v)}; }
inline float hmax8(F32x8 a) {
    const __m128 half = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    const __m128 quarter = _mm_max_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_max_ss(quarter, _mm_movehdup_ps(quarter)));
}
inline void round32_i8(const F32x8* chunks, int8_t* out) {
    const __m256i a = _mm256_cvtps_epi32(chunks[0].v), b = _mm256_cvtps_epi32(chunks[1].v);
    const __m256i c = _mm256_cvtps_epi32(chunks[2].v), d = _mm256_cvtps_epi32(chunks[3].v);
    // The packs work within 128-bit halves; the permute puts the 32 bytes back in order.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    const __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), ordered);
}

#else

struct F32x8 {
    float v[kLanes];
};

inline F32x8 zero8() { return F32x8{}; }
inline void keep_in_register(F32x8&) {}
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
inline F32x8 add8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] += b.v[i];
    return a;
}
inline F32x8 div8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] /= b.v[i];
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
inline float f16_scalar(uint16_t bits) { return fp16_to_fp32(bits); }

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
inline U8x32 move_bits32_u8(U8x32 a, int from, int to, uint8_t mask) {
    for (uint8_t& byte : a.v) byte = static_cast<uint8_t>(((byte >> from) & mask) << to);
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
inline U8x32 bit_bytes32_u8(uint32_t bits, uint8_t value) {
    U8x32 r;
    for (int i = 0; i < 32; ++i) r.v[i] = ((bits >> i) & 1u) != 0 ? value : 0;
    return r;
}
inline F32x8 exp8(F32x8 x) {
    for (float& lane : x.v) lane = std::exp(lane);
    return x;
}
inline F32x8 log8(F32x8 x) {
    for (float& lane : x.v) lane = std::log(lane);
    return x;
}
inline F32x8 select8(F32x8 mask, F32x8 if_set, F32x8 if_clear) {
    for (int i = 0; i < kLanes; ++i) if_clear.v[i] = mask.v[i] != 0.0f ? if_set.v[i] : if_clear.v[i];
    return if_clear;
}
inline F32x8 greater8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] = a.v[i] > b.v[i] ? 1.0f : 0.0f;
    return a;
}
inline F32x8 equal8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] = a.v[i] == b.v[i] ? 1.0f : 0.0f;
    return a;
}
inline F32x8 is_nan8(F32x8 a) {
    for (float& lane : a.v) lane = std::isnan(lane) ? 1.0f : 0.0f;
    return a;
}
[[gnu::always_inline]] inline void transpose8x8(F32x8* v) {
    for (int i = 0; i < kLanes; ++i) {
        for (int j = i + 1; j < kLanes; ++j) std::swap(v[i].v[j], v[j].v[i]);
    }
}



struct I8x32 {
    int8_t v[32];
};
struct I32x8 {
    int32_t v[kLanes];
};
inline I32x8 zero8_i32() { return I32x8{}; }
inline I32x8 add8_i32(I32x8 a, I32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] += b.v[i];
    return a;
}
inline I32x8 sub_shifted8_i32(I32x8 a, I32x8 b, int shift) {
    for (int i = 0; i < kLanes; ++i) a.v[i] -= b.v[i] * (1 << shift);
    return a;
}
inline F32x8 to_f32(I32x8 a) {
    F32x8 r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = static_cast<float>(a.v[i]);
    return r;
}
inline I8x32 load32_i8(const int8_t* p) {
    I8x32 r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
}
inline U8x32 plus128_u8(I8x32 q) {
    U8x32 u;
    for (int i = 0; i < 32; ++i) u.v[i] = static_cast<uint8_t>(q.v[i] + 128);
    return u;
}
inline I8x32 lookup32_i8(U8x32 index, const int8_t* table) {
    I8x32 r;
    for (int i = 0; i < 32; ++i) r.v[i] = table[index.v[i]];
    return r;
}
inline I32x8 dot32_u8_i8(U8x32 u, const int8_t* x) {
    I32x8 r{};
    for (int i = 0; i < 32; ++i) r.v[i / 4] += u.v[i] * x[i];
    return r;
}
inline I32x8 dot32_i8_i8(I8x32 w, const int8_t* x) {
    I32x8 r{};
    for (int i = 0; i < 32; ++i) r.v[i / 4] += w.v[i] * x[i];
    return r;
}
template <bool kEqualPair = false>
inline I32x8 add_scaled_dot32_u8_i8(I32x8 acc, U8x32 u, const int8_t* x, const int16_t* scale_pair) {
    constexpr int kHalf = 16;
    for (int i = 0; i < 32; ++i) acc.v[i / 4] += u.v[i] * x[i] * scale_pair[i < kHalf ? 0 : 1];
    return acc;
}
inline void widen16_u8_i16(uint64_t first8, uint64_t next8, int16_t bias, int16_t* out) {
    for (int i = 0; i < kLanes; ++i) {
        out[i] = static_cast<int16_t>(byte_of(first8, i) - bias);
        out[i + kLanes] = static_cast<int16_t>(byte_of(next8, i) - bias);
    }
}
inline void widen16_i8_i16(const int8_t* bytes, int16_t* out) {
    for (int i = 0; i < 2 * kLanes; ++i) out[i] = bytes[i];
}
inline void widen8_twice_u8_i16(uint64_t bytes8, int16_t* out) {
    for (int i = 0; i < kLanes; ++i) out[2 * i] = out[2 * i + 1] = static_cast<int16_t>(byte_of(bytes8, i));
}
inline I32x8 dot16_i16(const int16_t* a, const int16_t* b) {
    I32x8 r{};
    for (int i = 0; i < 2 * kLanes; ++i) r.v[i / 2] += a[i] * b[i];
    return r;
}

inline F32x8 abs8(F32x8 a) {
    for (float& lane : a.v) lane = std::fabs(lane);
    return a;
}
inline F32x8 max8(F32x8 a, F32x8 b) {
    for (int i = 0; i < kLanes; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
}
inline float hmax8(F32x8 a) {
    float m = a.v[0];
    for (float lane : a.v) m = lane > m ? lane : m;
    return m;
}
inline void round32_i8(const F32x8* chunks, int8_t* out) {
    for (int i = 0; i < 32; ++i) out[i] = static_cast<int8_t>(std::nearbyint(chunks[i / kLanes].v[i % kLanes]));
}

#endif

// a * b + c rounded once, on scalars (one instruction with FMA): spelled out, because the compiler's
// contraction of a * b + c into an fma may differ from one inlined copy to the next, and a token's result
// must not depend on its tile.
inline float fma1(float a, float b, float c) { return std::fma(a, b, c); }

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
