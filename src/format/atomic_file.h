// Atomic file replacement: write everything to a temporary file beside the target, flush it to disk, then
// rename over the target, so a crash or error never leaves a half-written file where a good one was.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace dendro {

class AtomicFileWriter {
public:
    // Opens PATH.tmp-<pid>-<16 hex digits>, after removing those that killed writers of PATH left behind.
    explicit AtomicFileWriter(std::string target_path);
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

// Removes the temporary files in `dir` of writers that no longer run: names "<target>.tmp-<pid>-<16 hex
// digits>" for a target name `is_target` accepts, whose process <pid> does not exist. A live writer's file,
// or one whose pid has been reused, is kept. Never throws; returns the number of files removed.
size_t remove_stale_temp_files(const std::filesystem::path& dir,
                               const std::function<bool(std::string_view target_name)>& is_target);

}  // namespace dendro
