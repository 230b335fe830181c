// A CUDA graph captured from the work a function issues on a stream, replayed with one launch. Capture uses
// the relaxed mode so that launch wrappers may raise a kernel's shared-memory limit while being captured.
#pragma once

#include <cuda_runtime.h>

#include <functional>

namespace dendro::cuda {

class CudaGraph {
public:
    CudaGraph(cudaStream_t stream, const std::function<void()>& issue_work);
    ~CudaGraph();
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;

    void launch(cudaStream_t stream) const;

private:
    cudaGraphExec_t exec_ = nullptr;
};

}  // namespace dendro::cuda
