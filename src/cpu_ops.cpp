// Per-token and per-channel numerics of the CPU forward pass (see cpu_ops.h).
#include "cpu_ops.h"

#include "cpu_simd.h"

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

void conv_silu_channel(const float* taps, int64_t d_conv, float bias, Channel window, ConstChannel in,
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

void scan_channel(const ScanChannelInputs& in, const float* a, float d, float dt_bias, int64_t d_state,
                  float* h, Channel y, int64_t n_tokens) {
    for (int64_t t = 0; t < n_tokens; ++t) {
        const float dt = softplus(in.dt_proj[t] + dt_bias);
        const float x = in.x[t];
        const float* b = in.b.data + t * in.b.stride;
        const float* c = in.c.data + t * in.c.stride;
        float sum = 0.0f;
        for (int64_t s = 0; s < d_state; ++s) {
            h[s] = std::exp(dt * a[s]) * h[s] + (dt * b[s]) * x;
            sum += h[s] * c[s];
        }
        y[t] = (sum + x * d) * silu(in.z[t]);
    }
}

}  // namespace dendro::cpu
