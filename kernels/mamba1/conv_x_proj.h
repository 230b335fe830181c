// Decode of 1..kMaxGemvBatch sequences: the conv step fused into x_proj. The channels are cut into slices of
// kConvXProjSlice; a block owns one slice (or, for larger batches, a few consecutive ones): it advances their
// conv windows, writes their conv outputs (the scan's u), and multiplies them with its column slice of every
// x_proj row. The result is one partial x_proj row per (block, sequence), summed in a fixed order by the SSM
// decode kernel as it stages them (ssm_decode.h: n_partials), so no atomics and the same bits on every run.
// Why: at batch 1, x_proj is a few hundred narrow rows (192 at the 2.8b shape) that one warp per row streams
// with too few loads in flight; split over channels, every block has its slice of every row in flight at
// once, and the conv launch goes away.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/conv1d.h"
#include "weights/device_matrix.h"

namespace dendro::cuda {

inline constexpr int kConvXProjSlice = 64;  // channels per block: 4 fp32, 8 fp16/bf16 or 16 Q8_0 a lane

struct ConvXProjParams {
    int n_batch = 0;                                 // 1..kMaxGemvBatch
    ConvWeights conv;
    const float* x = nullptr;      int64_t x_stride = 0;   // conv inputs: the first d_inner of each in_proj row
    float* windows = nullptr;      int64_t slot_stride = 0;  // window of row b: windows + slots[b]*slot_stride
    const int32_t* slots = nullptr;
    float* u = nullptr;            int64_t u_stride = 0;   // conv outputs
    DeviceMatrix x_proj;                             // (dt_rank + 2 d_state) x d_inner
    // Partial row of (block s, sequence b): partials + s*partial_stride + b*x_proj.rows, x_proj.rows floats.
    float* partials = nullptr;     int64_t partial_stride = 0;
};

// Partial rows per sequence (= blocks) that launch_conv_x_proj leaves for d_inner channels and n_batch
// sequences, and the most it leaves for any batch (for sizing the partials buffer: that many times
// kMaxGemvBatch rows).
int64_t conv_x_proj_partials(int64_t d_inner, int n_batch);
int64_t conv_x_proj_max_partials(int64_t d_inner);

void launch_conv_x_proj(const ConvXProjParams& params, cudaStream_t stream);

}  // namespace dendro::cuda
