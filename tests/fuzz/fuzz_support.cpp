#include "fuzz_support.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dendro::fuzz {

MemoryFile::MemoryFile(const char* name) : fd_(::memfd_create(name, 0)) {
    if (fd_ < 0) {
        std::fprintf(stderr, "fuzz: memfd_create failed: %s\n", std::strerror(errno));
        std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemoryFile::~MemoryFile() { ::close(fd_); }

void MemoryFile::write(std::string_view bytes) {
    bool ok = ::ftruncate(fd_, 0) == 0;
    size_t done = 0;
    while (ok && done < bytes.size()) {
        const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        ok = n > 0;
        if (ok) done += static_cast<size_t>(n);
    }
    if (!ok) {
        std::fprintf(stderr, "fuzz: cannot write %s: %s\n", path_.c_str(), std::strerror(errno));
        std::abort();
    }
}

void show_rejection(const Error& error) {
    static const bool show = std::getenv("DENDRO_FUZZ_SHOW_ERRORS") != nullptr;
    if (show) std::fprintf(stderr, "fuzz: rejected: %s\n", error.what());
}

void require(bool holds, std::string_view what) {
    if (holds) return;
    std::fprintf(stderr, "fuzz: property violated: %.*s\n", static_cast<int>(what.size()), what.data());
    std::abort();
}

namespace {

// How much of each text a violation prints, from a little before the first difference.
constexpr size_t kShownTextBytes = 200;
constexpr size_t kContextBytes = 40;

void print_escaped(const char* label, std::string_view text) {
    std::fprintf(stderr, "  %s: \"", label);
    for (const char c : text.substr(0, kShownTextBytes)) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
            std::fputc(byte, stderr);
        } else {
            std::fprintf(stderr, "\\x%02x", byte);
        }
    }
    std::fprintf(stderr, "\"%s\n", text.size() > kShownTextBytes ? "..." : "");
}

}  // namespace

void require_same_text(std::string_view got, std::string_view expected, std::string_view what) {
    if (got == expected) return;
    size_t first = 0;
    while (first < got.size() && first < expected.size() && got[first] == expected[first]) ++first;
    const size_t from = first > kContextBytes ? first - kContextBytes : 0;
    std::fprintf(stderr, "fuzz: texts differ at byte %zu; shown from byte %zu:\n", first, from);
    print_escaped("got", got.substr(from));
    print_escaped("expected", expected.substr(from));
    require(false, what);
}

std::vector<std::string_view> split_parts(std::string_view input, size_t max_parts) {
    std::vector<std::string_view> parts;
    while (parts.size() + 1 < max_parts) {
        const size_t at = input.find(kPartSeparator);
        if (at == std::string_view::npos) break;
        parts.push_back(input.substr(0, at));
        input.remove_prefix(at + kPartSeparator.size());
    }
    parts.push_back(input);
    return parts;
}

}  // namespace dendro::fuzz
