// Opening a file the user named, for reading, without ever blocking or touching what is not a plain file.
// The path is stat'ed first, so that a FIFO, device, directory or socket is refused without being opened
// (opening a device can have effects of its own), then opened with O_NONBLOCK, so that even a path swapped
// for a FIFO in between cannot block the open, and the opened descriptor is checked again (fstat): what is
// read is what was checked.
#pragma once

#include <cstdint>
#include <string>

namespace dendro {

// An open, read-only descriptor of a regular file (RAII; reads block as usual).
class RegularFile {
public:
    // Throws dendro::Error "PATH: cannot open: ..." or "PATH: not a regular file (a FIFO)" and the like.
    explicit RegularFile(const std::string& path);
    ~RegularFile();
    RegularFile(const RegularFile&) = delete;
    RegularFile& operator=(const RegularFile&) = delete;

    int fd() const { return fd_; }
    uint64_t size() const { return size_; }  // when it was opened
    const std::string& path() const { return path_; }

    // Reads exactly `size` bytes at the current position; throws dendro::Error naming the path otherwise.
    void read(void* out, size_t size);

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

inline constexpr uint64_t kAnyFileSize = UINT64_MAX;

// Whether read_whole_file also reads FIFOs and pipes (a prompt from `-f /dev/stdin` or `-f <(command)`),
// waiting for their writer and reading to the end.
enum class PipeInput { refuse, accept };

// The whole content of `path`; more than max_bytes is an error naming the path and the limit.
std::string read_whole_file(const std::string& path, uint64_t max_bytes = kAnyFileSize,
                            PipeInput pipes = PipeInput::refuse);

}  // namespace dendro
