// Atomic file replacement: write everything to a temporary file beside the target, flush it to disk, then
// rename over the target, so a crash or error never leaves a half-written file where a good one was.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace dendro {

class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::string target_path);  // opens PATH.tmp-<pid>-<random>
    ~AtomicFileWriter();                                 // removes the temporary file unless committed
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(std::span<const uint8_t> bytes);          // throws dendro::Error on I/O failure
    void write(const void* data, size_t size);
    uint64_t bytes_written() const { return written_; }
    void commit();                                       // fsync + rename onto the target

private:
    std::string target_;
    std::string temp_;
    std::FILE* file_ = nullptr;
    uint64_t written_ = 0;
    bool committed_ = false;
};

}  // namespace dendro
