#include "ops/embedding.h"

#include "runtime/cuda_check.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kEmbeddingThreads = 256;

__global__ void embedding_gather_kernel(DeviceMatrix embd, const int32_t* __restrict__ tokens,
                                        float* __restrict__ out) {
    const int64_t token = tokens[blockIdx.x];
    for (int64_t i = threadIdx.x; i < embd.cols; i += kEmbeddingThreads) {
        out[blockIdx.x * embd.cols + i] = weight_at(embd, token, i);
    }
}

}  // namespace

void launch_embedding_gather(const DeviceMatrix& embd, const int32_t* tokens, int64_t n, float* out,
                             cudaStream_t stream) {
    if (n == 0) return;
    embedding_gather_kernel<<<static_cast<unsigned>(n), kEmbeddingThreads, 0, stream>>>(embd, tokens, out);
    check_launch("embedding_gather_kernel");
}

}  // namespace dendro::cuda
