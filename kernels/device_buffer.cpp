#include "device_buffer.h"

#include <cuda_runtime.h>

#include <utility>

#include "cuda_check.h"
#include "error.h"

namespace dendro::cuda {

namespace {
constexpr double kMiB = 1024.0 * 1024.0;
}

DeviceBuffer::DeviceBuffer(size_t bytes, const std::string& purpose) : bytes_(bytes) {
    if (bytes == 0) return;
    const cudaError_t status = cudaMalloc(&data_, bytes);
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free_bytes = 0, total_bytes = 0;
        cudaMemGetInfo(&free_bytes, &total_bytes);
        fail("CUDA: out of device memory allocating ", bytes / kMiB, " MiB for ", purpose, " (", free_bytes / kMiB,
             " MiB free of ", total_bytes / kMiB, " MiB)");
    }
    check(status, concat("allocating ", bytes, " bytes for ", purpose));
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
}

void DeviceBuffer::release() {
    if (data_ != nullptr) cudaFree(data_);  // a destructor cannot throw; a failed free only leaks
    data_ = nullptr;
    bytes_ = 0;
}

PinnedBuffer::PinnedBuffer(size_t bytes, const std::string& purpose) : bytes_(bytes) {
    if (bytes == 0) return;
    check(cudaMallocHost(&data_, bytes), concat("allocating ", bytes, " bytes of pinned host memory for ", purpose));
}

PinnedBuffer::~PinnedBuffer() { release(); }

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
}

void PinnedBuffer::release() {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
}

DeviceBuffer upload(const void* host, size_t bytes, const std::string& purpose) {
    DeviceBuffer buffer(bytes, purpose);
    if (bytes > 0) check(cudaMemcpy(buffer.get(), host, bytes, cudaMemcpyHostToDevice), concat("uploading ", purpose));
    return buffer;
}

void download(const void* device, void* host, size_t bytes, const std::string& purpose) {
    if (bytes > 0) check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), concat("downloading ", purpose));
}

}  // namespace dendro::cuda
