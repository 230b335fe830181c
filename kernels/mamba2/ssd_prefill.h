// Mamba-2's SSD scan over the prompt of one sequence on the device, in chunks of `chunk` tokens, from the
// state in `state` (the sequence's slot) and back into it. Per head h (group g = h / (n_head / n_group)),
// with dt_t = clamp(softplus(dt_raw_t + dt_bias), time_step_min, time_step_max) and a_t = dt_t A:
//     state <- exp(a_t) state + dt_t x_t B_t^T,   y_t = state C_t + D x_t      (x_t: head_dim, B_t, C_t: d_state)
// computed per chunk in SSD's matrix form (docs/cuda-notes.md, "Mamba-2"): with cum_t the running sum of a
// within the chunk, y = (C B^T o L) X + diag(exp(cum)) C h0^T + D X with L[t][s] = exp(cum_t - cum_s) dt_s
// for s <= t, and the end state exp(cum_last) h0 + X^T diag(exp(cum_last - cum) dt) B. Three kernels: every
// chunk's own end state (from zero) on tensor cores; the pass of states from chunk to chunk (the only
// sequential part: one multiply-add per state element and chunk); every chunk's outputs on tensor cores.
// The matrix products take fp16 operands with fp32 accumulation; the start state enters as the sum of two
// fp16 halves (high and low parts) so that the carried state keeps about 21 bits; dt, the decays, the D skip
// and the state passing are fp32. y is the SSM output before the gate and the norm (gated_norm.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/device_buffer.h"

namespace dendro::cuda {

// Tokens per SSD chunk. 64 by default: the same boundaries as the CPU backend's kSsdChunk (so that a prompt
// split after whole chunks splits both backends' sums alike), and at mamba2-2.7b's head_dim 64 / d_state 128
// the output kernel's shared memory (about 96 KiB) lets two blocks share an SM. 128 halves the chunk states
// to pass and doubles the intra-chunk work; which is faster is measured on the GPU (gpu_session.sh), not
// assumed. Any multiple of kSsdTile up to kMaxSsdChunk is accepted.
inline constexpr int64_t kDefaultSsdChunk = 64;
inline constexpr int64_t kMaxSsdChunk = 128;
inline constexpr int64_t kSsdTile = 16;  // the WMMA tile edge
// Largest head_dim and d_state the kernels' shared memory is laid out for.
inline constexpr int64_t kMaxSsdHeadDim = 128;
inline constexpr int64_t kMaxSsdState = 128;

struct SsdShape {
    int64_t n_head = 0, head_dim = 0, d_state = 0, n_group = 0;
};

struct SsdPrefillParams {
    SsdShape shape;
    int64_t n_tokens = 0;
    int64_t chunk = kDefaultSsdChunk;
    const float* x = nullptr;  int64_t x_stride = 0;    // token t, head h: x + t*x_stride + h*head_dim
    const float* B = nullptr;                            // token t, group g: B + t*bc_stride + g*d_state
    const float* C = nullptr;  int64_t bc_stride = 0;
    const float* dt = nullptr; int64_t dt_stride = 0;    // raw dt (before the bias): dt + t*dt_stride + h
    const float* dt_bias = nullptr;                      // [n_head]
    const float* A = nullptr;                            // [n_head], negative
    const float* D = nullptr;                            // [n_head]
    float time_step_min = 0.0f, time_step_max = 0.0f;
    float* state = nullptr;                              // [n_head][head_dim][d_state], fp32
    float* y = nullptr;        int64_t y_stride = 0;     // token t, head h: y + t*y_stride + h*head_dim
};

// The chunk states of up to max_tokens tokens (chunks x n_head x head_dim x d_state floats) and each chunk's
// total decay, allocated once so that prefill never allocates.
class SsdWorkspace {
public:
    SsdWorkspace() = default;
    SsdWorkspace(const SsdShape& shape, int64_t max_tokens, int64_t chunk);
    int64_t max_tokens() const { return max_tokens_; }
    int64_t chunk() const { return chunk_; }
    float* chunk_states() const { return chunk_states_.as<float>(); }
    float* chunk_decays() const { return chunk_decays_.as<float>(); }
    uint64_t bytes() const { return chunk_states_.bytes() + chunk_decays_.bytes(); }

private:
    int64_t max_tokens_ = 0, chunk_ = 0;
    DeviceBuffer chunk_states_, chunk_decays_;
};

// Whether the kernels take this shape (head_dim and d_state within the limits above, whole groups of heads).
bool ssd_shape_supported(const SsdShape& shape);
// Throws dendro::Error on a shape or chunk the kernels do not take, or more tokens than the workspace holds.
void launch_ssd_prefill(const SsdPrefillParams& params, const SsdWorkspace& workspace, cudaStream_t stream);

}  // namespace dendro::cuda
