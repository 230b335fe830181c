// Quantizers of fp32 blocks into ggml's Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the k-quants Q4_K, Q5_K, Q6_K.
//
// Legacy quants and Q8_0 (ggml's reference formulas, bit for bit what gguf-py writes): the symmetric types
// take the block's value of largest magnitude `max` (the first one on ties) and d = max / -2^(bits-1), so that
// value lands on the most negative quant; q = trunc(x / d + 2^(bits-1) + 0.5), at most 2^bits - 1. The types
// with a min take d = (max - min) / (2^bits - 1), m = min, q = trunc((x - min) / d + 0.5). Q8_0: d = amax/127,
// q = round(x / d).
//
// K-quants, in two levels, as llama.cpp publishes its reference k-quantizers (no importance matrix):
// 1. Each sub-block gets a real scale (and for Q4_K/Q5_K a min) by a search that minimises the weighted
//    squared error sum_i w_i (scale * q_i - min - x_i)^2:
//    - Q4_K, Q5_K (value = scale * q - min, q in [0, nmax], min >= 0; weights w_i = rms(x) + |x_i|): for a
//      grid of trial inverse scales (nmax + rmin + k * rdelta) / (max - min'), min' = min(0, min x), the
//      quants q_i = round((x_i - min') * inverse) are fixed and (scale, min) are their weighted least-squares
//      fit (with min clamped to >= 0 by refitting the scale alone); the trial with the smallest error wins,
//      the plain range fit (inverse nmax / (max - min')) being the first candidate.
//    - Q6_K (value = scale * q, q in [-32, 31]; weights w_i = x_i^2): trial inverse scales -(32 + k/10) / max,
//      k = -9..9, max the value of largest magnitude; for fixed quants the best scale is sum w x q / sum w q^2
//      and the trial with the largest (sum w x q)^2 / sum w q^2 (the smallest error) wins.
// 2. The sub-block scales (and mins) are quantized against one fp16 super-block scale (6-bit unsigned for
//    Q4_K/Q5_K with the largest at 63, int8 for Q6_K with the largest magnitude at -128), and every quant is
//    then recomputed from the stored (rounded) scales so that what a reader dequantizes is what was fitted.
//    Beyond llama.cpp's method, each Q4_K/Q5_K sub-block keeps whichever of its rounded 6-bit scale and min
//    and their neighbours (+-1) gives the smallest squared error after requantization (3-6 % less error).
// Rounding to nearest is half to even, as ggml's nearest_int.
#include "format/ggml_quantize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace dendro {
namespace {

constexpr int kLegacyHalf = kLegacyQuantBlockSize / 2;
constexpr uint8_t kNibbleMask = 0x0f;
constexpr float kRoundUp = 0.5f;  // trunc(v + 0.5): round half up, as ggml's reference legacy quantizers

// Round half to even (rintf in the default rounding mode: one instruction with SSE4.1, where lrintf is a
// library call), limited to +-2^30 so that the conversion is defined for any input, NaN giving the lower limit.
constexpr float kNearestLimit = 1073741824.0f;
int nearest(float v) {
    const float r = std::rint(v);
    return static_cast<int>(!(r >= -kNearestLimit) ? -kNearestLimit : (r > kNearestLimit ? kNearestLimit : r));
}

void store_f16(uint16_t& field, float value) { field = fp32_to_fp16(value); }

// trunc(v) limited to [0, max_quant]: ggml's legacy rounding for every finite v it can meet, and defined (0)
// for a NaN that a non-finite input makes.
uint8_t truncated_quant(float v, int max_quant) {
    return static_cast<uint8_t>(std::fmin(std::fmax(v, 0.0f), static_cast<float>(max_quant)));
}

// The first value of largest magnitude, with its sign.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

// Symmetric legacy quants: q in [0, 2^bits), value = d * (q - offset).
template <int kOffset>
float symmetric_quants(const float* x, uint8_t* q) {
    constexpr int kMaxQuant = 2 * kOffset - 1;
    const float d = signed_absmax(x, kLegacyQuantBlockSize) / -static_cast<float>(kOffset);
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kLegacyQuantBlockSize; ++j) {
        const float scaled = x[j] * inverse;
        q[j] = truncated_quant(scaled + (kOffset + kRoundUp), kMaxQuant);
    }
    return d;
}

struct ScaleMin {
    float d, m;
};
// Legacy quants with a min: q in [0, 2^bits), value = d * q + m.
template <int kMaxQuant>
ScaleMin min_quants(const float* x, uint8_t* q) {
    float min = x[0], max = x[0];
    for (int j = 1; j < kLegacyQuantBlockSize; ++j) {
        min = std::min(min, x[j]);
        max = std::max(max, x[j]);
    }
    const float d = (max - min) / static_cast<float>(kMaxQuant);
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kLegacyQuantBlockSize; ++j) {
        const float scaled = (x[j] - min) * inverse;
        q[j] = truncated_quant(scaled + kRoundUp, kMaxQuant);
    }
    return {d, min};
}

// Element j < 16 is the low nibble of byte j, element j + 16 its high nibble.
void pack_legacy_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int j = 0; j < kLegacyHalf; ++j) {
        qs[j] = static_cast<uint8_t>((q[j] & kNibbleMask) | ((q[j + kLegacyHalf] & kNibbleMask) << kNibbleBits));
    }
}
// Bit j of the little-endian word: the fifth bit of element j.
void pack_fifth_bits(const uint8_t* q, uint8_t* qh) {
    uint32_t bits = 0;
    for (int j = 0; j < kLegacyQuantBlockSize; ++j) bits |= static_cast<uint32_t>((q[j] >> kNibbleBits) & 1u) << j;
    std::memcpy(qh, &bits, sizeof(bits));
}

// --- k-quants ---

constexpr int kSubBlock32 = 32, kSubBlock16 = 16;
constexpr int kSubBlocks32 = kKQuantBlockSize / kSubBlock32;  // Q4_K, Q5_K
constexpr int kSubBlocks16 = kKQuantBlockSize / kSubBlock16;  // Q6_K
constexpr int kMaxSixBit = 63;
// The grid of trial inverse scales of the scale-and-min search: (nmax + rmin + k * kTrialStep), k = 0..steps.
struct ScaleMinSearch {
    int nmax;
    float rmin;
    int steps;
};
constexpr float kTrialStep = 0.1f;
constexpr ScaleMinSearch kQ4KSearch{15, -1.0f, 20};
constexpr ScaleMinSearch kQ5KSearch{31, -0.5f, 15};

struct SubBlockFit {
    float scale, min;  // value = scale * q - min, min >= 0
};

// Weighted least-squares (scale, min) of n values on quants in [0, nmax], searched over trial inverse scales
// (see the top of this file); q receives the winning quants.
SubBlockFit fit_scale_min(const float* x, const float* w, int n, const ScaleMinSearch& search, uint8_t* q) {
    float lo = x[0], hi = x[0];
    double sum_w = 0.0, sum_x = 0.0;
    for (int i = 0; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
        sum_w += w[i];
        sum_x += static_cast<double>(w[i]) * x[i];
    }
    lo = std::min(lo, 0.0f);  // the min is subtracted, so the offset of q = 0 is never above zero
    if (hi == lo) {
        std::fill(q, q + n, uint8_t{0});
        return {0.0f, -lo};
    }
    const auto quants_for = [&](float inverse, uint8_t* out) {
        for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(std::clamp(nearest(inverse * (x[i] - lo)), 0, search.nmax));
    };
    const auto error_of = [&](float scale, float offset, const uint8_t* l) {
        double error = 0.0;
        for (int i = 0; i < n; ++i) {
            const double diff = static_cast<double>(scale) * l[i] + offset - x[i];
            error += w[i] * diff * diff;
        }
        return error;
    };
    const float range = hi - lo;
    const float range_inverse = static_cast<float>(search.nmax) / range;
    float best_scale = 1.0f / range_inverse, best_offset = lo;
    quants_for(range_inverse, q);
    double best_error = error_of(best_scale, best_offset, q);
    std::array<uint8_t, kSubBlock32> trial{};
    for (int k = 0; k <= search.steps; ++k) {
        quants_for((search.rmin + kTrialStep * static_cast<float>(k) + static_cast<float>(search.nmax)) / range,
                   trial.data());
        double sum_l = 0.0, sum_l2 = 0.0, sum_xl = 0.0;
        for (int i = 0; i < n; ++i) {
            const double wl = static_cast<double>(w[i]) * trial[i];
            sum_l += wl;
            sum_l2 += wl * trial[i];
            sum_xl += wl * x[i];
        }
        const double det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0.0)) continue;
        float scale = static_cast<float>((sum_w * sum_xl - sum_x * sum_l) / det);
        float offset = static_cast<float>((sum_l2 * sum_x - sum_l * sum_xl) / det);
        if (offset > 0.0f) {  // refit the scale alone with the offset at its bound
            offset = 0.0f;
            scale = static_cast<float>(sum_xl / sum_l2);
        }
        const double error = error_of(scale, offset, trial.data());
        if (error < best_error) {
            best_error = error;
            best_scale = scale;
            best_offset = offset;
            std::copy(trial.begin(), trial.begin() + n, q);
        }
    }
    return {best_scale, -best_offset};
}

// Q4_K/Q5_K: 6-bit scale and min of sub-block j in the 12 packed bytes (inverse of k_quant_scales_mins).
void pack_scales_mins(const uint8_t* scale, const uint8_t* min, uint8_t* packed) {
    constexpr int kLowSubBlocks = 4, kTopShift = 6;
    std::memset(packed, 0, kKQuantScaleBytes);
    for (int j = 0; j < kSubBlocks32; ++j) {
        if (j < kLowSubBlocks) {
            packed[j] = scale[j];
            packed[j + kLowSubBlocks] = min[j];
        } else {
            packed[j + kLowSubBlocks] = static_cast<uint8_t>((scale[j] & kNibbleMask) | ((min[j] & kNibbleMask) << kNibbleBits));
            packed[j - kLowSubBlocks] |= static_cast<uint8_t>((scale[j] >> kNibbleBits) << kTopShift);
            packed[j] |= static_cast<uint8_t>((min[j] >> kNibbleBits) << kTopShift);
        }
    }
}

struct KQuantWithMin {
    uint16_t d, dmin;
    uint8_t scales[kKQuantScaleBytes];
    uint8_t q[kKQuantBlockSize];  // one quant a byte, in [0, nmax]
};

// Q4_K and Q5_K share everything but the quant width.
KQuantWithMin quantize_with_min(const float* x, const ScaleMinSearch& search) {
    KQuantWithMin out{};
    std::array<float, kSubBlocks32> scales{}, mins{};
    std::array<float, kSubBlock32> weights{};
    for (int j = 0; j < kSubBlocks32; ++j) {
        const float* xs = x + kSubBlock32 * j;
        float sum_x2 = 0.0f;
        for (int i = 0; i < kSubBlock32; ++i) sum_x2 += xs[i] * xs[i];
        const float rms = std::sqrt(sum_x2 / kSubBlock32);
        for (int i = 0; i < kSubBlock32; ++i) weights[i] = rms + std::fabs(xs[i]);
        const SubBlockFit fit = fit_scale_min(xs, weights.data(), kSubBlock32, search, out.q + kSubBlock32 * j);
        scales[j] = fit.scale;
        mins[j] = fit.min;
    }
    const float max_scale = *std::max_element(scales.begin(), scales.end());
    const float max_min = *std::max_element(mins.begin(), mins.end());
    const float inverse_scale = max_scale > 0.0f ? kMaxSixBit / max_scale : 0.0f;
    const float inverse_min = max_min > 0.0f ? kMaxSixBit / max_min : 0.0f;
    store_f16(out.d, max_scale / kMaxSixBit);
    store_f16(out.dmin, max_min / kMaxSixBit);
    const float d = fp16_to_fp32(out.d), dmin = fp16_to_fp32(out.dmin);
    // Requantizes sub-block j against a stored 6-bit scale and min; returns the squared error of what a reader
    // dequantizes.
    const auto requantize = [&](int j, int ls, int lm, uint8_t* q) {
        const float scale = d * static_cast<float>(ls), min = dmin * static_cast<float>(lm);
        const float* xs = x + kSubBlock32 * j;
        double error = 0.0;
        for (int i = 0; i < kSubBlock32; ++i) {
            q[i] = scale == 0.0f ? 0 : static_cast<uint8_t>(std::clamp(nearest((xs[i] + min) / scale), 0, search.nmax));
            const float value = scale * static_cast<float>(q[i]) - min;
            error += (static_cast<double>(value) - xs[i]) * (static_cast<double>(value) - xs[i]);
        }
        return error;
    };
    std::array<uint8_t, kSubBlocks32> ls{}, lm{};
    std::array<uint8_t, kSubBlock32> trial{};
    for (int j = 0; j < kSubBlocks32; ++j) {
        const auto six_bit = [](float v) { return std::clamp(nearest(v), 0, kMaxSixBit); };
        const int nearest_ls = six_bit(inverse_scale * scales[j]), nearest_lm = six_bit(inverse_min * mins[j]);
        ls[j] = static_cast<uint8_t>(nearest_ls);
        lm[j] = static_cast<uint8_t>(nearest_lm);
        uint8_t* q = out.q + kSubBlock32 * j;
        double best = requantize(j, nearest_ls, nearest_lm, q);
        // The 6-bit rounding of a sub-block's scale and min can move its grid by up to half a step of the
        // super-block scales; of the neighbouring stored values, keep the pair that reconstructs it best.
        for (const int try_ls : {nearest_ls - 1, nearest_ls, nearest_ls + 1}) {
            for (const int try_lm : {nearest_lm - 1, nearest_lm, nearest_lm + 1}) {
                if (try_ls < 0 || try_ls > kMaxSixBit || try_lm < 0 || try_lm > kMaxSixBit) continue;
                if (try_ls == nearest_ls && try_lm == nearest_lm) continue;
                const double error = requantize(j, try_ls, try_lm, trial.data());
                if (error < best) {
                    best = error;
                    ls[j] = static_cast<uint8_t>(try_ls);
                    lm[j] = static_cast<uint8_t>(try_lm);
                    std::copy(trial.begin(), trial.end(), q);
                }
            }
        }
    }
    pack_scales_mins(ls.data(), lm.data(), out.scales);
    return out;
}

// Sub-block 2g is the low nibbles of qs[32g .. 32g + 31], sub-block 2g + 1 their high nibbles.
void pack_k_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int g = 0; g < kSubBlocks32 / 2; ++g) {
        for (int l = 0; l < kSubBlock32; ++l) {
            const uint8_t low = q[2 * kSubBlock32 * g + l] & kNibbleMask;
            const uint8_t high = q[2 * kSubBlock32 * g + kSubBlock32 + l] & kNibbleMask;
            qs[kSubBlock32 * g + l] = static_cast<uint8_t>(low | (high << kNibbleBits));
        }
    }
}

// Q6_K: the signed scale of one sub-block of 16 (quants in [-32, 31] into q, stored +32); see the top.
constexpr int kQ6Levels = kQ6KOffset;  // nmax: q in [-32, 31]
constexpr int kQ6Trials = 9;           // trial inverse scales -(32 + k/10) / max for k = -9..9
constexpr float kNegligibleMax = 1e-15f;
float fit_symmetric_scale(const float* x, uint8_t* q) {
    const float max = signed_absmax(x, kSubBlock16);
    if (std::fabs(max) < kNegligibleMax) {
        std::fill(q, q + kSubBlock16, static_cast<uint8_t>(kQ6KOffset));
        return 0.0f;
    }
    const auto quant = [](float inverse, float v) { return std::clamp(nearest(inverse * v), -kQ6Levels, kQ6Levels - 1); };
    float best_scale = 0.0f, best = 0.0f;
    bool have = false;
    const auto try_trial = [&](int trial) {
        const float inverse = -(static_cast<float>(kQ6Levels) + kTrialStep * static_cast<float>(trial)) / max;
        float sum_lx = 0.0f, sum_l2 = 0.0f;
        for (int i = 0; i < kSubBlock16; ++i) {
            const float l = static_cast<float>(quant(inverse, x[i]));
            const float w = x[i] * x[i];
            sum_lx += w * x[i] * l;
            sum_l2 += w * l * l;
        }
        if (!(sum_l2 > 0.0f) || (have && !(sum_lx * sum_lx > best * sum_l2))) return;
        have = true;
        best_scale = sum_lx / sum_l2;
        best = best_scale * sum_lx;
        for (int i = 0; i < kSubBlock16; ++i) q[i] = static_cast<uint8_t>(quant(inverse, x[i]) + kQ6KOffset);
    };
    try_trial(0);  // the plain range fit first
    for (int k = -kQ6Trials; k <= kQ6Trials; ++k) {
        if (k != 0) try_trial(k);
    }
    if (!have) std::fill(q, q + kSubBlock16, static_cast<uint8_t>(kQ6KOffset));
    return best_scale;
}

}  // namespace

void quantize_q4_0(const float* x, BlockQ4_0* blocks, int64_t n_blocks) {
    std::array<uint8_t, kLegacyQuantBlockSize> q{};
    for (int64_t b = 0; b < n_blocks; ++b, x += kLegacyQuantBlockSize) {
        store_f16(blocks[b].d, symmetric_quants<kQ4Offset>(x, q.data()));
        pack_legacy_nibbles(q.data(), blocks[b].qs);
    }
}

void quantize_q4_1(const float* x, BlockQ4_1* blocks, int64_t n_blocks) {
    constexpr int kMaxQuant = 15;
    std::array<uint8_t, kLegacyQuantBlockSize> q{};
    for (int64_t b = 0; b < n_blocks; ++b, x += kLegacyQuantBlockSize) {
        const ScaleMin sm = min_quants<kMaxQuant>(x, q.data());
        store_f16(blocks[b].d, sm.d);
        store_f16(blocks[b].m, sm.m);
        pack_legacy_nibbles(q.data(), blocks[b].qs);
    }
}

void quantize_q5_0(const float* x, BlockQ5_0* blocks, int64_t n_blocks) {
    std::array<uint8_t, kLegacyQuantBlockSize> q{};
    for (int64_t b = 0; b < n_blocks; ++b, x += kLegacyQuantBlockSize) {
        store_f16(blocks[b].d, symmetric_quants<kQ5Offset>(x, q.data()));
        pack_fifth_bits(q.data(), blocks[b].qh);
        pack_legacy_nibbles(q.data(), blocks[b].qs);
    }
}

void quantize_q5_1(const float* x, BlockQ5_1* blocks, int64_t n_blocks) {
    constexpr int kMaxQuant = 31;
    std::array<uint8_t, kLegacyQuantBlockSize> q{};
    for (int64_t b = 0; b < n_blocks; ++b, x += kLegacyQuantBlockSize) {
        const ScaleMin sm = min_quants<kMaxQuant>(x, q.data());
        store_f16(blocks[b].d, sm.d);
        store_f16(blocks[b].m, sm.m);
        pack_fifth_bits(q.data(), blocks[b].qh);
        pack_legacy_nibbles(q.data(), blocks[b].qs);
    }
}

void quantize_q8_0(const float* x, BlockQ8_0* blocks, int64_t n_blocks) {
    constexpr float kMaxQuant = 127.0f;
    for (int64_t b = 0; b < n_blocks; ++b, x += kQ8_0BlockSize) {
        float amax = 0.0f;
        for (int64_t j = 0; j < kQ8_0BlockSize; ++j) {
            const float magnitude = std::fabs(x[j]);
            // Same comparison order as ggml's MAX(amax, |x|): a NaN element propagates into the scale.
            amax = amax > magnitude ? amax : magnitude;
        }
        const float d = amax / kMaxQuant;
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(blocks[b].d, d);
        for (int64_t j = 0; j < kQ8_0BlockSize; ++j) {
            const float q = std::round(x[j] * inverse);  // |q| <= 127, or NaN from a non-finite input
            blocks[b].qs[j] = std::isnan(q) ? 0 : static_cast<int8_t>(q);
        }
    }
}

void quantize_q4_k(const float* x, BlockQ4_K* blocks, int64_t n_blocks) {
    for (int64_t b = 0; b < n_blocks; ++b, x += kKQuantBlockSize) {
        const KQuantWithMin k = quantize_with_min(x, kQ4KSearch);
        blocks[b].d = k.d;
        blocks[b].dmin = k.dmin;
        std::memcpy(blocks[b].scales, k.scales, kKQuantScaleBytes);
        pack_k_nibbles(k.q, blocks[b].qs);
    }
}

void quantize_q5_k(const float* x, BlockQ5_K* blocks, int64_t n_blocks) {
    for (int64_t b = 0; b < n_blocks; ++b, x += kKQuantBlockSize) {
        const KQuantWithMin k = quantize_with_min(x, kQ5KSearch);
        blocks[b].d = k.d;
        blocks[b].dmin = k.dmin;
        std::memcpy(blocks[b].scales, k.scales, kKQuantScaleBytes);
        pack_k_nibbles(k.q, blocks[b].qs);
        // The fifth bit of element l of sub-block s is bit s of qh[l].
        std::memset(blocks[b].qh, 0, sizeof(blocks[b].qh));
        for (int s = 0; s < kSubBlocks32; ++s) {
            for (int l = 0; l < kSubBlock32; ++l) {
                blocks[b].qh[l] |= static_cast<uint8_t>(((k.q[kSubBlock32 * s + l] >> kNibbleBits) & 1u) << s);
            }
        }
    }
}

void quantize_q6_k(const float* x, BlockQ6_K* blocks, int64_t n_blocks) {
    constexpr int kInt8Lowest = -128, kInt8Max = 127;
    constexpr int kHalf = kKQuantBlockSize / 2, kQuarter = 32, kHalfQlBytes = kHalf / 2;
    constexpr uint8_t kTwoBits = 0x03;
    for (int64_t b = 0; b < n_blocks; ++b, x += kKQuantBlockSize) {
        BlockQ6_K& block = blocks[b];
        std::array<uint8_t, kKQuantBlockSize> q{};
        std::array<float, kSubBlocks16> scales{};
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int j = 0; j < kSubBlocks16; ++j) {
            scales[j] = fit_symmetric_scale(x + kSubBlock16 * j, q.data() + kSubBlock16 * j);
            if (std::fabs(scales[j]) > max_abs_scale) {
                max_abs_scale = std::fabs(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < kNegligibleMax) {
            std::memset(&block, 0, sizeof(block));
            std::fill(q.begin(), q.end(), static_cast<uint8_t>(kQ6KOffset));
        } else {
            const float inverse = static_cast<float>(kInt8Lowest) / max_scale;
            store_f16(block.d, 1.0f / inverse);
            const float d = fp16_to_fp32(block.d);
            for (int j = 0; j < kSubBlocks16; ++j) {
                const int scale = std::clamp(nearest(inverse * scales[j]), kInt8Lowest, kInt8Max);
                block.scales[j] = static_cast<int8_t>(scale);
                const float sub_scale = d * static_cast<float>(scale);
                for (int i = 0; i < kSubBlock16; ++i) {
                    const int e = kSubBlock16 * j + i;
                    q[e] = sub_scale == 0.0f ? static_cast<uint8_t>(kQ6KOffset)
                                             : static_cast<uint8_t>(std::clamp(nearest(x[e] / sub_scale), -kQ6Levels,
                                                                               kQ6Levels - 1) +
                                                                    kQ6KOffset);
                }
            }
        }
        // In half h, quarter j, element l: low 4 bits in ql[64h + 32(j & 1) + l] (low nibble for j < 2),
        // high 2 bits at bits 2j of qh[32h + l].
        for (int h = 0; h < 2; ++h) {
            for (int l = 0; l < kQuarter; ++l) {
                const uint8_t* e = q.data() + kHalf * h + l;
                const uint8_t q0 = e[0], q1 = e[kQuarter], q2 = e[2 * kQuarter], q3 = e[3 * kQuarter];
                block.ql[kHalfQlBytes * h + l] = static_cast<uint8_t>((q0 & kNibbleMask) | ((q2 & kNibbleMask) << kNibbleBits));
                block.ql[kHalfQlBytes * h + kQuarter + l] =
                    static_cast<uint8_t>((q1 & kNibbleMask) | ((q3 & kNibbleMask) << kNibbleBits));
                block.qh[kQuarter * h + l] =
                    static_cast<uint8_t>(((q0 >> kNibbleBits) & kTwoBits) | (((q1 >> kNibbleBits) & kTwoBits) << 2) |
                                         (((q2 >> kNibbleBits) & kTwoBits) << 4) | (((q3 >> kNibbleBits) & kTwoBits) << 6));
            }
        }
    }
}

bool can_quantize_to(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::Q8_0:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K: return true;
        default: return false;
    }
}

}  // namespace dendro
