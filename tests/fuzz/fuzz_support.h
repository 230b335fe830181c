// Shared pieces of the fuzz targets: the input bytes as a file (the library's readers take paths), the rule
// that bad input is rejected with dendro::Error (any other exception escaping is a finding), and inputs that
// stand for several files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace dendro::fuzz {

// A memory-backed file (memfd), rewritten with each input; path() names it through /proc/self/fd.
class MemoryFile {
public:
    explicit MemoryFile(const char* name);
    ~MemoryFile();
    MemoryFile(const MemoryFile&) = delete;
    MemoryFile& operator=(const MemoryFile&) = delete;

    void write(std::string_view bytes);  // replaces the contents
    const std::string& path() const { return path_; }

private:
    int fd_ = -1;
    std::string path_;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`. dendro::Error is how the library rejects bad input, so it is swallowed (and printed when
// the environment sets DENDRO_FUZZ_SHOW_ERRORS, to see how far the seeds get); anything else propagates to
// libFuzzer, which reports it as a crash.
void show_rejection(const Error& error);
template <typename Parse>
void reject_with_dendro_error(Parse&& parse) {
    try {
        parse();
    } catch (const Error& error) {
        show_rejection(error);
    }
}

// Aborts the run with `what` when a property the library promises does not hold.
void require(bool holds, std::string_view what);
// The same for two texts that must be equal; a violation prints both (non-ASCII bytes escaped).
void require_same_text(std::string_view got, std::string_view expected, std::string_view what);

// An input that stands for several files holds their contents one after another, separated by this line
// (a text separator, so that the seed corpora stay readable).
inline constexpr std::string_view kPartSeparator = "\n=====next-file=====\n";
// At most `max_parts` parts; the last one keeps any further separators.
std::vector<std::string_view> split_parts(std::string_view input, size_t max_parts);

}  // namespace dendro::fuzz
