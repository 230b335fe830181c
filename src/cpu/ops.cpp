// Per-token and per-channel numerics of the CPU forward pass (see cpu_ops.h).
#include "cpu/ops.h"

#include <algorithm>
#include <vector>

#include "cpu/simd.h"

namespace dendro::cpu {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
    const float mean_square = dot_f32(x, x, n) / static_cast<float>(n);
    const float scale = 1.0f / std::sqrt(mean_square + eps);
    if (weight == nullptr) {
        for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale;
    } else {
        for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
    }
}

void conv_silu_channel(ConstChannel taps, int64_t d_conv, float bias, Channel window, ConstChannel in,
                       Channel out, int64_t n_tokens) {
    const int64_t n_past = d_conv - 1;
    for (int64_t t = 0; t < n_tokens; ++t) {
        const float input = in[t];
        float sum = 0.0f;
        for (int64_t k = 0; k < n_past; ++k) sum += taps[k] * window[k];
        sum += taps[n_past] * input;
        for (int64_t k = 0; k + 1 < n_past; ++k) window[k] = window[k + 1];
        if (n_past > 0) window[n_past - 1] = input;
        out[t] = silu(sum + bias);
    }
}

void conv_silu_channels(const ConvTaps& taps, int64_t begin, int64_t end, Channel window, ConstChannel in,
                        Channel out, int64_t n_tokens) {
    // Token by token, 8 channels at a time along the rows (the rows of `in` are contiguous in channels; a
    // channel's column, walked token by token, touched a new cache line per token). Token t's slot k is
    // input row t + k - n_past, or before the first token a row of the window.
    const int64_t n_past = taps.d_conv - 1;
    const int64_t vector_end = begin + (end - begin) / kLanes * kLanes;
    const auto slot_row = [&](int64_t t, int64_t k) -> const float* {
        const int64_t row = t + k - n_past;
        return row >= 0 ? in.data + row * in.stride : window.data + (row + n_past) * window.stride;
    };
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t c = begin; c < vector_end; c += kLanes) {
            F32x8 sum = zero8();
            for (int64_t k = 0; k < taps.d_conv; ++k) sum = fma8(load8(taps.by_slot + k * taps.stride + c), load8(slot_row(t, k) + c), sum);
            const F32x8 bias = taps.bias != nullptr ? load8(taps.bias + c) : zero8();
            store8(out.data + t * out.stride + c, silu8(add8(sum, bias)));
        }
    }
    // The window becomes the last n_past inputs; in a call shorter than the window, row k takes the
    // window's row k + n_tokens, not yet overwritten.
    for (int64_t k = 0; k < n_past; ++k) {
        const float* source = slot_row(n_tokens, k);
        float* row = window.data + k * window.stride;
        if (source != row) std::copy(source + begin, source + vector_end, row + begin);
    }
    for (int64_t c = vector_end; c < end; ++c) {
        conv_silu_channel({taps.by_slot + c, taps.stride}, taps.d_conv, taps.bias != nullptr ? taps.bias[c] : 0.0f,
                          {window.data + c, window.stride}, {in.data + c, in.stride}, {out.data + c, out.stride}, n_tokens);
    }
}

void scan_channel(const ScanChannelInputs& in, const float* a, float d, float dt_bias, int64_t d_state,
                  float* h, Channel y, int64_t n_tokens) {
    // The state update is element-wise; C·h is reduced in the canonical 8-lane order of cpu_simd.h.
    const int64_t whole = d_state - d_state % kLanes;
    for (int64_t t = 0; t < n_tokens; ++t) {
        const float dt = softplus(in.dt_proj[t] + dt_bias);
        const float x = in.x[t];
        const float* b = in.b.data + t * in.b.stride;
        const float* c = in.c.data + t * in.c.stride;
        const F32x8 dt8 = broadcast8(dt), x8 = broadcast8(x);
        F32x8 acc = zero8();
        for (int64_t s = 0; s < whole; s += kLanes) {
            const F32x8 decay = exp8(mul8(dt8, load8(a + s)));
            const F32x8 state = fma8(decay, load8(h + s), mul8(mul8(dt8, load8(b + s)), x8));
            store8(h + s, state);
            acc = fma8(state, load8(c + s), acc);
        }
        if (whole < d_state) {
            const int64_t n = d_state - whole;
            const F32x8 decay = exp8(mul8(dt8, load8_partial(a + whole, n)));
            const F32x8 input = mul8(mul8(dt8, load8_partial(b + whole, n)), x8);
            const F32x8 state = fma8(decay, load8_partial(h + whole, n), input);
            store8_partial(h + whole, state, n);
            acc = fma8(state, load8_partial(c + whole, n), acc);
        }
        y[t] = (hsum8(acc) + x * d) * silu(in.z[t]);
    }
}

namespace {
// How many steps ahead (of one or two groups of 8 channels, see scan_channel_groups) the scan asks for their
// states and A, into L1 (they are used within a microsecond). A decode step finds them in DRAM (the weights streamed since the last step evict them):
// without it the scan read its 150 KB a layer and thread in 26 us, latency bound; with it, 17 (m1 130m
// q4_k_m decode, 2 threads: +5 % tok/s).
constexpr int64_t kScanPrefetchGroups = 2;
constexpr int kPrefetchToL1 = 3;
}  // namespace

namespace {

// Channels [c, end) of scan_channels in groups of 8, kGroups groups at a time while that many remain;
// returns the first channel left. A group's token is one long chain of dependent operations (softplus,
// exp, the state update, C . h over the states in order, the gate: ~260 cycles of latency against ~140 of
// issue), longer than the out-of-order window reaches across: two groups stepped side by side overlap their
// chains (each channel's operations unchanged; one Zen 4 core, 768 channels of 16 states: a decode token
// 12.1 -> 9.5 us, 64 tokens 596 -> 474). The states are held in kStates vectors a group where the count is
// known when compiling, or in memory (kStates 0: d_state).
template <int64_t kStates, int kGroups>
int64_t scan_channel_groups(const ScanChannelInputs& in, const ScanWeights& w, int64_t c, int64_t end, float* h,
                            Channel y, int64_t n_tokens) {
    const int64_t d_state = kStates > 0 ? kStates : w.d_state;
    const auto at = [](ConstChannel v, int64_t t, int64_t c) { return v.data + t * v.stride + c; };
    F32x8 held[kGroups][kStates > 0 ? kStates : 1];
    F32x8* state[kGroups];  // state[g][s] lane i: state s of channel c + 8 g + i
    for (int g = 0; g < kGroups; ++g) state[g] = held[g];
    if constexpr (kStates == 0) {
        thread_local std::vector<F32x8> state_buffer;
        state_buffer.resize(static_cast<size_t>(kGroups * d_state));
        for (int g = 0; g < kGroups; ++g) state[g] = state_buffer.data() + g * d_state;
    }
    constexpr int64_t kStep = kGroups * kLanes;
    for (; c + kStep <= end; c += kStep) {
        if (c + (kScanPrefetchGroups + 1) * kStep <= end) {
            const int64_t ahead = c + kScanPrefetchGroups * kStep;
            prefetch_lines<kPrefetchToL1>(reinterpret_cast<uintptr_t>(h + ahead * d_state), kStep * d_state * sizeof(float));
            for (int64_t s = 0; s < d_state; ++s) {
                prefetch_lines<kPrefetchToL1>(reinterpret_cast<uintptr_t>(w.a_by_state + s * w.n_channels + ahead), kStep * sizeof(float));
            }
        }
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g) {
            const float* h_g = h + (c + g * kLanes) * d_state;
#pragma GCC unroll 4
            for (int64_t s0 = 0; s0 < d_state; s0 += kLanes) {
                F32x8* block = state[g] + s0;
#pragma GCC unroll 8
                for (int64_t i = 0; i < kLanes; ++i) block[i] = load8(h_g + i * d_state + s0);
                transpose8x8(block);
            }
        }
        for (int64_t t = 0; t < n_tokens; ++t) {
            const float* b = in.b.data + t * in.b.stride;
            const float* cv = in.c.data + t * in.c.stride;
            F32x8 dt[kGroups], x[kGroups], dt_x[kGroups], acc[kGroups];
#pragma GCC unroll 2
            for (int g = 0; g < kGroups; ++g) {
                const int64_t cg = c + g * kLanes;
                dt[g] = softplus8(add8(load8(at(in.dt_proj, t, cg)), load8(w.dt_bias + cg)));
                x[g] = load8(at(in.x, t, cg));
                dt_x[g] = mul8(dt[g], x[g]);
                acc[g] = zero8();
            }
#pragma GCC unroll 32
            for (int64_t s = 0; s < d_state; ++s) {
#pragma GCC unroll 2
                for (int g = 0; g < kGroups; ++g) {
                    const F32x8 decay = exp8(mul8(dt[g], load8(w.a_by_state + s * w.n_channels + c + g * kLanes)));
                    state[g][s] = fma8(decay, state[g][s], mul8(dt_x[g], broadcast8(b[s])));
                    acc[g] = fma8(state[g][s], broadcast8(cv[s]), acc[g]);
                }
            }
#pragma GCC unroll 2
            for (int g = 0; g < kGroups; ++g) {
                const int64_t cg = c + g * kLanes;
                store8(y.data + t * y.stride + cg, mul8(fma8(x[g], load8(w.d + cg), acc[g]), silu8(load8(at(in.z, t, cg)))));
            }
        }
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g) {
            float* h_g = h + (c + g * kLanes) * d_state;
#pragma GCC unroll 4
            for (int64_t s0 = 0; s0 < d_state; s0 += kLanes) {
                F32x8 block[kLanes];
#pragma GCC unroll 8
                for (int64_t i = 0; i < kLanes; ++i) block[i] = state[g][s0 + i];
                transpose8x8(block);
#pragma GCC unroll 8
                for (int64_t i = 0; i < kLanes; ++i) store8(h_g + i * d_state + s0, block[i]);
            }
        }
    }
    return c;
}

// The state count of Mamba-1 and Falcon-Mamba.
constexpr int64_t kMamba1States = 16;

}  // namespace

void scan_channels(const ScanChannelInputs& in, const ScanWeights& w, int64_t begin, int64_t end, float* h,
                   Channel y, int64_t n_tokens) {
    const int64_t d_state = w.d_state;
    const auto at = [](ConstChannel v, int64_t t, int64_t c) { return v.data + t * v.stride + c; };
    int64_t c = begin;
    if (d_state == kMamba1States) {
        c = scan_channel_groups<kMamba1States, 2>(in, w, c, end, h, y, n_tokens);
        c = scan_channel_groups<kMamba1States, 1>(in, w, c, end, h, y, n_tokens);
    } else if (d_state % kLanes == 0) {
        c = scan_channel_groups<0, 2>(in, w, c, end, h, y, n_tokens);
        c = scan_channel_groups<0, 1>(in, w, c, end, h, y, n_tokens);
    }
    std::vector<float> a_of_c(static_cast<size_t>(c < end ? d_state : 0));
    for (; c < end; ++c) {
        for (int64_t s = 0; s < d_state; ++s) a_of_c[s] = w.a_by_state[s * w.n_channels + c];
        const ScanChannelInputs one{{at(in.dt_proj, 0, c), in.dt_proj.stride}, {at(in.x, 0, c), in.x.stride},
                                    {at(in.z, 0, c), in.z.stride}, in.b, in.c};
        scan_channel(one, a_of_c.data(), w.d[c], w.dt_bias[c], d_state, h + c * d_state, {y.data + c, y.stride}, n_tokens);
    }
}

float ssm_row_step(float* h, float decay, float x_dt, const float* b, const float* c, int64_t d_state) {
    const int64_t whole = d_state - d_state % kLanes;
    const F32x8 decay8 = broadcast8(decay), x_dt8 = broadcast8(x_dt);
    F32x8 acc = zero8();
    for (int64_t s = 0; s < whole; s += kLanes) {
        const F32x8 state = fma8(decay8, load8(h + s), mul8(x_dt8, load8(b + s)));
        store8(h + s, state);
        acc = fma8(state, load8(c + s), acc);
    }
    if (whole < d_state) {
        const int64_t n = d_state - whole;
        const F32x8 state = fma8(decay8, load8_partial(h + whole, n), mul8(x_dt8, load8_partial(b + whole, n)));
        store8_partial(h + whole, state, n);
        acc = fma8(state, load8_partial(c + whole, n), acc);
    }
    return hsum8(acc);
}

}  // namespace dendro::cpu
