// A Mamba-2 layer's mixer on the device, from the normed residual to out_proj's output: in_proj through the
// shared projection code (GEMV up to kMaxGemvBatch rows, cuBLAS above), the causal conv over xBC (conv1d.h,
// its window carried in the slot), then for a prompt the chunked SSD scan (ssd_prefill.h) and the gated norm
// (gated_norm.h), for a decode batch the fused step (ssm_decode_mamba2.h), and out_proj. Activations between
// the kernels are fp32 rows, as on the Mamba-1 path; the SSD's matrix products run on fp16 tensor cores.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "weights/device_model.h"
#include "linear/gemm.h"
#include "mamba2/ssd_prefill.h"
#include "mamba2/ssm_decode_mamba2.h"
#include "model/model.h"

namespace dendro::cuda {

// Whether the Mamba-2 kernels take this model's shape (ssd_shape_supported and the conv's width).
bool mamba2_shape_supported(const ModelHparams& hp);

// Scratch rows shared by every layer: in_proj outputs (in_proj_rows wide), conv outputs (conv_channels), SSM
// outputs (d_inner).
struct Mamba2Activations {
    float* zxbcdt = nullptr;
    float* xbc = nullptr;
    float* y = nullptr;
};

// One layer's conv windows and SSM states of every slot: slot s's at conv + s*conv_slot_stride and
// ssm + s*ssm_slot_stride; a decode batch's rows name their slots in `slots` (device memory).
struct Mamba2SlotStates {
    float* conv = nullptr;  int64_t conv_slot_stride = 0;
    float* ssm = nullptr;   int64_t ssm_slot_stride = 0;
    const int32_t* slots = nullptr;
};

// The SSD chunk states of a prefill pass and the decode step's norm workspace, allocated once.
class Mamba2Workspace {
public:
    Mamba2Workspace(const ModelHparams& hp, int64_t max_prefill_tokens, int max_decode_batch);
    const SsdWorkspace& ssd() const { return ssd_; }
    const Mamba2DecodeWorkspace& decode() const { return decode_; }
    uint64_t bytes() const { return ssd_.bytes() + decode_.bytes(); }

private:
    SsdWorkspace ssd_;
    Mamba2DecodeWorkspace decode_;
};

// Prefill of n rows of one sequence whose layer state is at slot `slot` of `states`.
void run_mamba2_prefill(const ModelHparams& hp, const DeviceLayer& w, const float* normed, int64_t n,
                        const Mamba2SlotStates& states, int slot, const Mamba2Activations& a, float* out,
                        const Mamba2Workspace& workspace, Gemm& gemm, cudaStream_t stream);
// Decode of n sequences, one token each, their slots in states.slots.
void run_mamba2_decode(const ModelHparams& hp, const DeviceLayer& w, const float* normed, int n,
                       const Mamba2SlotStates& states, const Mamba2Activations& a, float* out,
                       const Mamba2Workspace& workspace, Gemm& gemm, cudaStream_t stream);

}  // namespace dendro::cuda
