#include "format/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace dendro {
namespace {

// Bytes asked of read(2) at a time when the size is not known in advance (pipes).
constexpr size_t kPipeReadChunk = size_t{1} << 16;

const char* kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a plain file";
}

bool accepted(mode_t mode, PipeInput pipes) { return S_ISREG(mode) || (pipes == PipeInput::accept && S_ISFIFO(mode)); }

[[noreturn]] void fail_not_regular(const std::string& path, mode_t mode) {
    fail(path, ": not a regular file (", kind_of(mode), ")");
}

// The open descriptor and what fstat says of it; see the header for the order of the checks.
int open_checked(const std::string& path, PipeInput pipes, struct stat& info) {
    if (::stat(path.c_str(), &info) != 0) fail(path, ": cannot open: ", std::strerror(errno));
    if (!accepted(info.st_mode, pipes)) fail_not_regular(path, info.st_mode);
    // A FIFO the caller reads is opened blocking: waiting for its writer is what reading one means.
    const bool wait_for_writer = S_ISFIFO(info.st_mode);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (wait_for_writer ? 0 : O_NONBLOCK));
    if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
    const auto close_and_fail = [fd](auto&&... message) {
        ::close(fd);
        fail(message...);
    };
    if (::fstat(fd, &info) != 0) close_and_fail(path, ": cannot stat: ", std::strerror(errno));
    if (!accepted(info.st_mode, pipes)) {
        ::close(fd);
        fail_not_regular(path, info.st_mode);
    }
    if (!wait_for_writer) {
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
            close_and_fail(path, ": cannot make reads blocking: ", std::strerror(errno));
        }
    }
    return fd;
}

// Up to `size` bytes at the descriptor's position, fewer only at the end of the file.
size_t read_up_to(int fd, const std::string& path, void* out, size_t size) {
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::read(fd, static_cast<char*>(out) + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(path, ": read error: ", std::strerror(errno));
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    return done;
}

void fail_too_large(const std::string& path, uint64_t max_bytes) {
    fail(path, ": larger than the ", max_bytes, " bytes accepted");
}

}  // namespace

RegularFile::RegularFile(const std::string& path) : path_(path) {
    struct stat info {};
    fd_ = open_checked(path, PipeInput::refuse, info);
    size_ = static_cast<uint64_t>(info.st_size);
}

RegularFile::~RegularFile() { ::close(fd_); }

void RegularFile::read(void* out, size_t size) {
    if (read_up_to(fd_, path_, out, size) != size) fail(path_, ": unexpected end of file (it shrank while read)");
}

std::string read_whole_file(const std::string& path, uint64_t max_bytes, PipeInput pipes) {
    struct stat info {};
    const int fd = open_checked(path, pipes, info);
    std::string bytes;
    try {
        if (S_ISREG(info.st_mode)) {
            const auto size = static_cast<uint64_t>(info.st_size);
            if (size > max_bytes) fail_too_large(path, max_bytes);
            bytes.resize(static_cast<size_t>(size));
            bytes.resize(read_up_to(fd, path, bytes.data(), bytes.size()));
        } else {  // a pipe: its size is known at its end only
            char chunk[kPipeReadChunk];
            for (size_t n; (n = read_up_to(fd, path, chunk, sizeof chunk)) > 0;) {
                if (n > max_bytes - bytes.size()) fail_too_large(path, max_bytes);
                bytes.append(chunk, n);
            }
        }
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    return bytes;
}

}  // namespace dendro
