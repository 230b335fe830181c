// Mamba-2's gated RMSNorm (HF MambaRMSNormGated, norm_before_gate false) on the device, fp32: per row and per
// group of d_inner / n_group channels, g = y * silu(z), then y <- weight * (g / sqrt(mean(g^2) + eps)).
// Prefill uses this kernel; decode fuses the same computation into its SSM step (ssm_decode_mamba2.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dendro::cuda {

struct GatedNormParams {
    int64_t n_rows = 0, d_inner = 0, n_group = 0;
    float* y = nullptr;        int64_t y_stride = 0;  // in place
    const float* z = nullptr;  int64_t z_stride = 0;
    const float* weight = nullptr;                    // [d_inner]
    float eps = 0.0f;
};

void launch_gated_rms_norm(const GatedNormParams& params, cudaStream_t stream);

}  // namespace dendro::cuda
