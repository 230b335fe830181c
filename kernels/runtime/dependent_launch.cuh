// Programmatic dependent launch (PDL, sm_90) for the chain of small kernels a decode step runs: a kernel
// launched with launch_dependent() may be scheduled while its predecessor is still running, so its launch and
// ramp overlap the predecessor's tail (about 1 us a kernel boundary from a CUDA graph, tens of boundaries a
// token). Correctness rests on one rule: every such kernel calls wait_for_producers() before it reads or
// writes anything another kernel touches; that waits for the predecessor grid to complete and its memory to
// be visible (transitively, since each predecessor waited in turn). What a kernel may do before the wait is
// read constant inputs (weights) or prefetch them. allow_consumers() lets the next kernel be scheduled
// before this one ends; without it that happens when this one completes.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "runtime/cuda_check.h"

namespace dendro::cuda {

__device__ __forceinline__ void wait_for_producers() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void allow_consumers() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void prefetch_to_l2(const void* address) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(address));
}

// DENDRO_CUDA_NO_PDL=1 launches every kernel plainly (the waits are then no-ops): a switch for telling a PDL
// problem from a kernel's on the first GPU runs.
inline bool dependent_launch_enabled() {
    static const bool enabled = [] {
        const char* value = std::getenv("DENDRO_CUDA_NO_PDL");
        return value == nullptr || std::strcmp(value, "1") != 0;
    }();
    return enabled;
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...), allowed to start before the stream's previous
// kernel has finished (see above). The previous operation on the stream must be a kernel (a copy before it
// takes a plain launch).
template <typename... Params, typename... Args>
void launch_dependent(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                      cudaStream_t stream, Args&&... args) {
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared_bytes;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = dependent_launch_enabled() ? 1 : 0;
    check(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), concat("launching ", name));
}

}  // namespace dendro::cuda
