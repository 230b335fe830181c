// Owning handles of device memory and pinned host memory. Allocation failures (device memory exhausted)
// throw dendro::Error naming what the memory was for and how much the device has left.
#pragma once

#include <cstddef>
#include <string>

namespace dendro::cuda {

class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(size_t bytes, const std::string& purpose);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& other) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* get() const { return data_; }
    template <typename T>
    T* as() const { return static_cast<T*>(data_); }
    size_t bytes() const { return bytes_; }

private:
    void release();
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

// Page-locked host memory: the only host memory a captured CUDA graph may copy to and from.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    PinnedBuffer(size_t bytes, const std::string& purpose);
    ~PinnedBuffer();
    PinnedBuffer(PinnedBuffer&& other) noexcept;
    PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;

    void* get() const { return data_; }
    template <typename T>
    T* as() const { return static_cast<T*>(data_); }
    size_t bytes() const { return bytes_; }

private:
    void release();
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

// Synchronous copies between host memory and a new or existing device buffer (uploads of weights, tests).
DeviceBuffer upload(const void* host, size_t bytes, const std::string& purpose);
void download(const void* device, void* host, size_t bytes, const std::string& purpose);

}  // namespace dendro::cuda
