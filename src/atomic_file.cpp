// Atomic replacement of a file: temp file beside the target, fsync, rename, fsync of the directory.
#include "atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "error.h"

namespace dendro {
namespace {

constexpr mode_t kNewFileMode = 0666;  // narrowed by the umask, like any file the user creates

std::string random_suffix() {
    std::random_device entropy;
    const uint64_t value = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
    char buffer[17];
    std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(value));
    return buffer;
}

// Makes the rename itself durable. Failure here is not fatal: the data is already safe in the file.
void sync_directory_of(const std::string& path) {
    std::filesystem::path directory = std::filesystem::path(path).parent_path();
    if (directory.empty()) directory = std::filesystem::path(".");
    const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string target_path) : target_(std::move(target_path)) {
    constexpr int kAttempts = 8;  // a clash of two random 64-bit names is all but impossible; retry anyway
    for (int attempt = 0; attempt < kAttempts && file_ == nullptr; ++attempt) {
        temp_ = concat(target_, ".tmp-", ::getpid(), "-", random_suffix());
        const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kNewFileMode);
        if (fd < 0) {
            if (errno == EEXIST) continue;
            fail(target_, ": cannot create temporary file ", temp_, ": ", std::strerror(errno));
        }
        file_ = ::fdopen(fd, "wb");
        if (file_ == nullptr) {
            const int err = errno;
            ::close(fd);
            ::unlink(temp_.c_str());
            fail(target_, ": cannot open temporary file ", temp_, ": ", std::strerror(err));
        }
    }
    if (file_ == nullptr) fail(target_, ": cannot create a unique temporary file beside it");
}

AtomicFileWriter::~AtomicFileWriter() {
    if (committed_) return;
    if (file_ != nullptr) std::fclose(file_);
    ::unlink(temp_.c_str());
}

void AtomicFileWriter::write(std::span<const uint8_t> bytes) { write(bytes.data(), bytes.size()); }

void AtomicFileWriter::write(const void* data, size_t size) {
    if (committed_) fail(target_, ": write after commit");
    if (size == 0) return;
    if (std::fwrite(data, 1, size, file_) != size) {
        fail(target_, ": write to ", temp_, " failed after ", written_, " bytes: ", std::strerror(errno));
    }
    written_ += size;
}

void AtomicFileWriter::commit() {
    if (committed_) fail(target_, ": committed twice");
    if (std::fflush(file_) != 0) fail(target_, ": flushing ", temp_, " failed: ", std::strerror(errno));
    if (::fsync(::fileno(file_)) != 0) fail(target_, ": fsync of ", temp_, " failed: ", std::strerror(errno));
    const int close_result = std::fclose(file_);
    file_ = nullptr;
    if (close_result != 0) fail(target_, ": closing ", temp_, " failed: ", std::strerror(errno));
    if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
        fail(target_, ": cannot rename ", temp_, " onto it: ", std::strerror(errno));
    }
    committed_ = true;
    sync_directory_of(target_);
}

}  // namespace dendro
