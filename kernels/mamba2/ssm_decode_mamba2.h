// The fused decode step of a Mamba-2 mixer between the conv and out_proj, for n_batch sequences of one token
// each: per head dt = clamp(softplus(dt_raw + dt_bias), time_step_min, time_step_max), decay = exp(dt A);
// per head row p: h[p] <- decay h[p] + dt x[p] B, y[p] = C.h[p] + D x[p]; then g = y * silu(z) and the grouped
// RMSNorm of g (gated_norm.h's computation), all in one kernel: the blocks of a (sequence, group) add their
// sums of squares to a slot of the workspace, and the last of them to arrive normalises the group's
// channels, so the pre-norm output never waits for a second launch. fp32 throughout.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/device_buffer.h"

namespace dendro::cuda {

struct Mamba2DecodeParams {
    int n_batch = 0;
    int64_t n_head = 0, head_dim = 0, d_state = 0, n_group = 0;
    const float* zxbcdt = nullptr; int64_t zxbcdt_stride = 0;  // in_proj rows: z at 0, raw dt at dt_offset
    int64_t dt_offset = 0;
    const float* xbc = nullptr;    int64_t xbc_stride = 0;  // conv outputs: x (d_inner), B, C (n_group*d_state each)
    const float* dt_bias = nullptr, *A = nullptr, *D = nullptr;  // [n_head]
    const float* norm_weight = nullptr;                          // [d_inner]
    float eps = 0.0f;
    float time_step_min = 0.0f, time_step_max = 0.0f;
    float* states = nullptr;       int64_t slot_stride = 0;  // row b's state: states + slots[b]*slot_stride
    const int32_t* slots = nullptr;
    float* y = nullptr;            int64_t y_stride = 0;    // the gated, normalised output
};

// The partial sums and arrival counters of up to max_batch sequences; the counters start at zero and every
// launch leaves them at zero, so a captured graph replays without resetting them.
class Mamba2DecodeWorkspace {
public:
    Mamba2DecodeWorkspace() = default;
    Mamba2DecodeWorkspace(int max_batch, int64_t n_head, int64_t head_dim, int64_t n_group);
    int max_batch() const { return max_batch_; }
    float* partial_sums() const { return partial_sums_.as<float>(); }
    unsigned* arrivals() const { return arrivals_.as<unsigned>(); }
    uint64_t bytes() const { return partial_sums_.bytes() + arrivals_.bytes(); }

private:
    int max_batch_ = 0;
    DeviceBuffer partial_sums_, arrivals_;
};

void launch_mamba2_decode(const Mamba2DecodeParams& params, const Mamba2DecodeWorkspace& workspace,
                          cudaStream_t stream);

}  // namespace dendro::cuda
