#include "runtime/cuda_graph.h"

#include "runtime/cuda_check.h"

namespace dendro::cuda {

CudaGraph::CudaGraph(cudaStream_t stream, const std::function<void()>& issue_work) {
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), "starting a CUDA graph capture");
    cudaGraph_t graph = nullptr;
    try {
        issue_work();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);  // leave the stream usable; the partial graph is discarded
        if (graph != nullptr) cudaGraphDestroy(graph);
        cudaGetLastError();
        throw;
    }
    check(cudaStreamEndCapture(stream, &graph), "ending a CUDA graph capture");
    const cudaError_t status = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    check(status, "instantiating a CUDA graph");
}

CudaGraph::~CudaGraph() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
}

void CudaGraph::launch(cudaStream_t stream) const { check(cudaGraphLaunch(exec_, stream), "launching a CUDA graph"); }

}  // namespace dendro::cuda
