// Fused decode step of a Mamba-1 mixer between x_proj and out_proj, for n_batch sequences of one token each:
// (optional dt/B/C norms), dt = softplus(dt_proj(dt_low) + dt_bias), then per channel and state
// h = exp(dt A) h + dt B u,
// y = (C.h + D u) * silu(z). One kernel, so the dt, the decayed state and the pre-gate output never leave the chip.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "weights/device_matrix.h"

namespace dendro::cuda {

struct SsmDecodeParams {
    int n_batch = 0;                                   // 1..kMaxSsmDecodeBatch
    int64_t d_inner = 0, d_state = 0, dt_rank = 0;
    const float* x_dbl = nullptr;  int64_t x_dbl_stride = 0;  // rows of [dt_low (dt_rank), B (d_state), C (d_state)]
    // x_dbl may be split into partial sums (conv_x_proj.h): row b is the sum over s < n_partials of
    // x_dbl + s*partial_stride + b*x_dbl_stride, summed in order of s.
    int n_partials = 1;            int64_t partial_stride = 0;
    // Falcon-style models: dt_low, B and C are each RMS-normalised (no weight) with this epsilon before use,
    // as kernels/ops/rms_norm.h's segment norm does in prefill.
    bool norm_dt_b_c = false;      float norm_eps = 0.0f;
    DeviceMatrix dt_weight;                            // d_inner x dt_rank
    const float* dt_bias = nullptr;                    // [d_inner] or null
    const float* A = nullptr;                          // [d_inner][d_state]
    const float* D = nullptr;                          // [d_inner]
    const float* u = nullptr;      int64_t u_stride = 0;  // conv outputs
    const float* z = nullptr;      int64_t z_stride = 0;  // gates
    float* states = nullptr;       int64_t slot_stride = 0;  // state of row b: states + slots[b]*slot_stride
    const int32_t* slots = nullptr;
    float* y = nullptr;            int64_t y_stride = 0;
};

inline constexpr int kMaxSsmDecodeBatch = 64;

void launch_ssm_decode(const SsmDecodeParams& params, cudaStream_t stream);

}  // namespace dendro::cuda
