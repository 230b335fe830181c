// The CUDA backend (Mamba-1 and Mamba-2): the model's weights (as loaded: F32/F16/BF16/Q8_0) and every sequence's state live on the
// device; each backend owns one stream. Prefill runs cuBLAS GEMMs and the chunked selective scan; decode runs
// GEMV kernels and a fused SSM step per layer, the whole step (embedding to logits or sampled tokens) captured
// once per batch size as a CUDA graph and replayed per token.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace dendro {

// Whether the CUDA backend computes this model: Mamba-1, or Mamba-2 of a shape its kernels take
// (mamba2/mamba2_mixer.h), with F32, F16, BF16 or Q8_0 matrices.
bool cuda_supports(const Model& model);
// Throws dendro::Error when no CUDA device is usable, the model is not one cuda_supports, or device memory
// runs out.
std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options);
// Number of CUDA devices the runtime sees; 0 (never an error) without a driver or a device.
int cuda_device_count();

}  // namespace dendro
