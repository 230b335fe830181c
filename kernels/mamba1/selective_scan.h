// Mamba-1 selective scan for prefill on the device: for each channel c and state n, with
//   dt_t = softplus(dt_raw[t][c] + dt_bias[c]),
//   h_t[c][n] = exp(dt_t A[c][n]) h_{t-1}[c][n] + dt_t B_t[n] u_t[c],
//   y_t[c] = (sum_n C_t[n] h_t[c][n] + D[c] u_t[c]) * silu(z_t[c]),
// starting from the state passed in (any saved state: prefill resumes) and leaving the final state in its place.
// fp32 throughout.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dendro::cuda {

struct ScanParams {
    int64_t n_tokens = 0, d_inner = 0, d_state = 0;
    const float* u = nullptr;       int64_t u_stride = 0;   // conv outputs, [t][c]
    const float* dt = nullptr;      int64_t dt_stride = 0;  // dt_proj outputs before bias and softplus
    const float* dt_bias = nullptr;                         // [d_inner] or null
    const float* A = nullptr;                               // [d_inner][d_state], -exp(A_log)
    const float* B = nullptr;                               // B_t[n] at B[t*bc_stride + n]
    const float* C = nullptr;                               // C_t[n] at C[t*bc_stride + n]
    int64_t bc_stride = 0;
    const float* D = nullptr;                               // [d_inner]
    const float* z = nullptr;       int64_t z_stride = 0;   // gate
    float* state = nullptr;                                 // [d_inner][d_state]: initial in, final out
    float* y = nullptr;             int64_t y_stride = 0;
};

void launch_selective_scan(const ScanParams& params, cudaStream_t stream);

}  // namespace dendro::cuda
