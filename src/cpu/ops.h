// Element-wise and per-channel operations of the CPU forward pass, in HF transformers' order of operations
// (MambaRMSNorm, causal_conv1d, the selective scan of MambaMixer's slow path), fp32 throughout.
#pragma once

#include <cmath>
#include <cstdint>

#include "cpu/simd.h"

namespace dendro::cpu {

// torch.nn.functional.softplus with beta 1: above this input it returns the input itself.
inline constexpr float kSoftplusThreshold = 20.0f;

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// silu on 8 lanes, with exp8 (within 2 ulp of std::exp).
inline F32x8 silu8(F32x8 x) { return div8(x, add8(broadcast8(1.0f), exp8(sub8(zero8(), x)))); }
// softplus on 8 lanes as max(x, 0) + log1p(e^-|x|), which neither overflows nor loses small values; log1p(u)
// is log(1 + u) * u / ((1 + u) - 1), exact to a few ulp even where 1 + u rounds (and u itself where it
// rounds to 1). A NaN stays NaN, as in the scalar softplus (exp8 and max8 would make it finite).
inline F32x8 softplus8(F32x8 x) {
    const F32x8 one = broadcast8(1.0f);
    const F32x8 u = exp8(sub8(zero8(), abs8(x)));
    const F32x8 w = add8(one, u);
    const F32x8 log1p_u = select8(equal8(w, one), u, div8(mul8(log8(w), u), sub8(w, one)));
    const F32x8 value = select8(greater8(x, broadcast8(kSoftplusThreshold)), x, add8(max8(x, zero8()), log1p_u));
    return select8(is_nan8(x), x, value);
}
inline float softplus(float x) { return x > kSoftplusThreshold ? x : std::log1p(std::exp(x)); }

// out = weight * (x * rsqrt(mean(x^2) + eps)); a null weight is the weightless norm of Falcon-Mamba's mixer.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);

// Strided view of one channel across the tokens of a sequence: element t is at data[t * stride].
struct Channel {
    float* data;
    int64_t stride;
    float& operator[](int64_t t) const { return data[t * stride]; }
};
struct ConstChannel {
    const float* data;
    int64_t stride;
    float operator[](int64_t t) const { return data[t * stride]; }
};

// Causal depthwise conv of one channel over n_tokens inputs, then SiLU. `window` holds the previous
// d_conv-1 inputs (oldest first) and is advanced past the new ones. taps[d_conv-1] weighs the newest input.
void conv_silu_channel(ConstChannel taps, int64_t d_conv, float bias, Channel window, ConstChannel in,
                       Channel out, int64_t n_tokens);

// The same for channels [begin, end) at once, eight in a vector: channel c of token t (or of window slot k)
// is element c of row t (or k) of in, out and window; taps.by_slot[k * taps.stride + c] weighs slot k
// (k = d_conv - 1 the newest input) and taps.bias[c] (null for none) is added before the SiLU.
struct ConvTaps {
    const float* by_slot;
    int64_t stride;
    int64_t d_conv;
    const float* bias;
};
void conv_silu_channels(const ConvTaps& taps, int64_t begin, int64_t end, Channel window, ConstChannel in,
                        Channel out, int64_t n_tokens);

// Per-token inputs of the selective scan for one channel.
struct ScanChannelInputs {
    ConstChannel dt_proj;  // dt_proj(dt_low) before its bias
    ConstChannel x;        // conv output
    ConstChannel z;        // gate
    ConstChannel b;        // B[t][s] at b.data + t * b.stride + s
    ConstChannel c;        // C[t][s] likewise
};

// Runs the selective scan of one channel over n_tokens, updating its state h (d_state values) and writing
// y[t] = (C[t]·h_t + D x[t]) * silu(z[t]) with dt = softplus(dt_proj + dt_bias), h_t = exp(dt A) h + (dt B) x.
void scan_channel(const ScanChannelInputs& in, const float* a, float d, float dt_bias, int64_t d_state,
                  float* h, Channel y, int64_t n_tokens);

// The same for channels [begin, end): channel c's inputs at element c of each token's row (b and c, shared by
// the channels, as above), its state at h + c * d_state, A[c][s] at a_by_state[s * n_channels + c]. Eight
// channels at a time with the states transposed into vectors over the channels (which takes the
// transcendental functions eight lanes at a time), where d_state allows.
struct ScanWeights {
    const float* a_by_state;
    int64_t n_channels;
    const float* d;
    const float* dt_bias;
    int64_t d_state;
};
void scan_channels(const ScanChannelInputs& in, const ScanWeights& w, int64_t begin, int64_t end, float* h,
                   Channel y, int64_t n_tokens);

// One token of a Mamba-2 head's state row p (d_state values): h = decay * h + x_dt * b, then returns c . h
// (reduced in the canonical 8-lane order of simd.h).
float ssm_row_step(float* h, float decay, float x_dt, const float* b, const float* c, int64_t d_state);

}  // namespace dendro::cpu
