// Owning handles of device memory and pinned host memory. Allocation failures (device memory exhausted)
// throw dendro::Error naming what the memory was for and how much the device has left.
#pragma once

#include <cstddef>
#include <string>

namespace dendro::cuda {

// One CUDA allocation, freed by the function that matches how it was made; movable, not copyable.
class CudaAllocation {
public:
    CudaAllocation() = default;
    ~CudaAllocation();
    CudaAllocation(CudaAllocation&& other) noexcept;
    CudaAllocation& operator=(CudaAllocation&& other) noexcept;
    CudaAllocation(const CudaAllocation&) = delete;
    CudaAllocation& operator=(const CudaAllocation&) = delete;

    void* get() const { return data_; }
    template <typename T>
    T* as() const { return static_cast<T*>(data_); }
    size_t bytes() const { return bytes_; }

protected:
    using FreeFunction = void (*)(void*);
    CudaAllocation(void* data, size_t bytes, FreeFunction free) : data_(data), bytes_(bytes), free_(free) {}

private:
    void release();
    void* data_ = nullptr;
    size_t bytes_ = 0;
    FreeFunction free_ = nullptr;
};

// Device memory (cudaMalloc).
class DeviceBuffer : public CudaAllocation {
public:
    DeviceBuffer() = default;
    DeviceBuffer(size_t bytes, const std::string& purpose);
};

// Page-locked host memory (cudaMallocHost): the only host memory a captured CUDA graph may copy to and from.
class PinnedBuffer : public CudaAllocation {
public:
    PinnedBuffer() = default;
    PinnedBuffer(size_t bytes, const std::string& purpose);
};

// Synchronous copies between host memory and a new or existing device buffer (uploads of weights, tests).
DeviceBuffer upload(const void* host, size_t bytes, const std::string& purpose);
void download(const void* device, void* host, size_t bytes, const std::string& purpose);

}  // namespace dendro::cuda
