// Read-only memory mapping of a whole regular file (RAII); opened as regular_file.h says, so never blocking.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace dendro {

class MappedFile {
public:
    explicit MappedFile(const std::string& path);  // throws dendro::Error naming the path
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const uint8_t> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace dendro
