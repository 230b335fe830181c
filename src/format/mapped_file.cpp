// Read-only mapping of a whole regular file.
#include "format/mapped_file.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "format/regular_file.h"

namespace dendro {

MappedFile::MappedFile(const std::string& path) : path_(path) {
    const RegularFile file(path);
    size_ = static_cast<size_t>(file.size());
    if (size_ > 0) {
        void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
        if (mapping == MAP_FAILED) fail(path, ": cannot map ", size_, " bytes: ", std::strerror(errno));
        data_ = static_cast<const uint8_t*>(mapping);
    }
}  // closing the file leaves the mapping in place

MappedFile::~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace dendro
