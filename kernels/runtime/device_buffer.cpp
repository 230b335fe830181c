#include "runtime/device_buffer.h"

#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda_check.h"
#include "common/error.h"

namespace dendro::cuda {

namespace {
constexpr double kMiB = 1024.0 * 1024.0;
}

CudaAllocation::~CudaAllocation() { release(); }

CudaAllocation::CudaAllocation(CudaAllocation&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      free_(std::exchange(other.free_, nullptr)) {}

CudaAllocation& CudaAllocation::operator=(CudaAllocation&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
        free_ = std::exchange(other.free_, nullptr);
    }
    return *this;
}

void CudaAllocation::release() {
    if (data_ != nullptr) free_(data_);  // a destructor cannot throw; a failed free only leaks
    data_ = nullptr;
    bytes_ = 0;
}

namespace {

void* allocate_device(size_t bytes, const std::string& purpose) {
    void* data = nullptr;
    if (bytes == 0) return data;
    const cudaError_t status = cudaMalloc(&data, bytes);
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free_bytes = 0, total_bytes = 0;
        cudaMemGetInfo(&free_bytes, &total_bytes);
        fail("CUDA: out of device memory allocating ", bytes / kMiB, " MiB for ", purpose, " (", free_bytes / kMiB,
             " MiB free of ", total_bytes / kMiB, " MiB)");
    }
    check(status, concat("allocating ", bytes, " bytes for ", purpose));
    return data;
}

void* allocate_pinned(size_t bytes, const std::string& purpose) {
    void* data = nullptr;
    if (bytes == 0) return data;
    check(cudaMallocHost(&data, bytes), concat("allocating ", bytes, " bytes of pinned host memory for ", purpose));
    return data;
}

}  // namespace

DeviceBuffer::DeviceBuffer(size_t bytes, const std::string& purpose)
    : CudaAllocation(allocate_device(bytes, purpose), bytes, [](void* data) { cudaFree(data); }) {}

PinnedBuffer::PinnedBuffer(size_t bytes, const std::string& purpose)
    : CudaAllocation(allocate_pinned(bytes, purpose), bytes, [](void* data) { cudaFreeHost(data); }) {}

DeviceBuffer upload(const void* host, size_t bytes, const std::string& purpose) {
    DeviceBuffer buffer(bytes, purpose);
    if (bytes > 0) check(cudaMemcpy(buffer.get(), host, bytes, cudaMemcpyHostToDevice), concat("uploading ", purpose));
    return buffer;
}

void download(const void* device, void* host, size_t bytes, const std::string& purpose) {
    if (bytes > 0) check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), concat("downloading ", purpose));
}

}  // namespace dendro::cuda
