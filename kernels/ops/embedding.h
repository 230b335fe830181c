// Token embedding on the device: out[i] = row tokens[i] of the embedding matrix, as fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "weights/device_matrix.h"

namespace dendro::cuda {

// tokens: n device int32 ids, each in [0, embd.rows) (callers validate ids on the host); out: n x embd.cols.
void launch_embedding_gather(const DeviceMatrix& embd, const int32_t* tokens, int64_t n, float* out,
                             cudaStream_t stream);

}  // namespace dendro::cuda
