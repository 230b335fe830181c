#include "model/model_fingerprint.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <vector>

#include "format/atomic_file.h"
#include "cpu/topology.h"
#include "common/error.h"
#include "format/gguf.h"
#include "format/regular_file.h"
#include "cpu/thread_pool.h"

namespace dendro {
namespace {

constexpr const char* kMemoHeader = "dendro-fingerprint-memo 1";
constexpr uint64_t kMaxMemoBytes = 64 << 10;  // a memo is four short lines

ModelFingerprint from_xxh128(XXH128_hash_t hash) { return {hash.high64, hash.low64}; }

// What must be unchanged for a remembered fingerprint to still describe the file: replacing, rewriting or
// touching it changes at least one of these (ctime cannot be set back by the user).
struct FileIdentity {
    std::string path;
    uint64_t device = 0, inode = 0, size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;

    bool operator==(const FileIdentity&) const = default;
};

std::optional<FileIdentity> identify(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    std::error_code ec;
    const std::filesystem::path canonical = std::filesystem::canonical(path, ec);
    if (ec) return std::nullopt;
    const auto ns = [](const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; };
    return FileIdentity{canonical.string(),     static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                        static_cast<uint64_t>(st.st_size), ns(st.st_mtim),           ns(st.st_ctim)};
}

std::string identity_line(const FileIdentity& id) {
    return concat(id.device, ' ', id.inode, ' ', id.size, ' ', id.mtime_ns, ' ', id.ctime_ns);
}

// One memo per model path; the name is a hash of the path so any path fits in a file name.
std::filesystem::path memo_path(const std::string& memo_dir, const FileIdentity& id) {
    const uint64_t key = XXH3_64bits(id.path.data(), id.path.size());
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.txt", static_cast<unsigned long long>(key));
    return std::filesystem::path(memo_dir) / name;
}

std::optional<ModelFingerprint> read_memo(const std::filesystem::path& path, const FileIdentity& id) {
    // A memo is a few lines; anything else at its path (a FIFO, a device, a huge file) is no memo.
    std::istringstream in;
    try {
        in.str(read_whole_file(path.string(), kMaxMemoBytes));
    } catch (const Error&) {
        return std::nullopt;
    }
    std::string header, file_path, identity, hex;
    if (!std::getline(in, header) || !std::getline(in, file_path) || !std::getline(in, identity) ||
        !std::getline(in, hex)) {
        return std::nullopt;
    }
    if (header != kMemoHeader || file_path != id.path || identity != identity_line(id)) return std::nullopt;
    return ModelFingerprint::from_hex(hex);
}

void write_memo(const std::filesystem::path& path, const FileIdentity& id, const ModelFingerprint& fingerprint) {
    std::filesystem::create_directories(path.parent_path());
    const std::string text = concat(kMemoHeader, '\n', id.path, '\n', identity_line(id), '\n', fingerprint.hex(), '\n');
    AtomicFileWriter writer(path.string());
    writer.write(text.data(), text.size());
    writer.commit();
}

}  // namespace

std::string ModelFingerprint::hex() const {
    char text[33];
    std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(high),
                  static_cast<unsigned long long>(low));
    return text;
}

std::optional<ModelFingerprint> ModelFingerprint::from_hex(std::string_view text) {
    constexpr size_t kHexDigits = 32;
    if (text.size() != kHexDigits) return std::nullopt;
    ModelFingerprint result;
    for (size_t i = 0; i < kHexDigits; ++i) {
        const char c = text[i];
        uint64_t digit;
        if (c >= '0' && c <= '9') {
            digit = static_cast<uint64_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            digit = static_cast<uint64_t>(c - 'a' + 10);
        } else {
            return std::nullopt;
        }
        uint64_t& half = i < kHexDigits / 2 ? result.high : result.low;
        half = (half << 4) | digit;
    }
    return result;
}

ModelFingerprint fingerprint_bytes(std::span<const uint8_t> bytes) {
    const size_t n_chunks = (bytes.size() + kFingerprintChunkBytes - 1) / kFingerprintChunkBytes;
    // digests: one (high, low) pair per chunk, then the total length, hashed together at the end.
    std::vector<uint64_t> digests(2 * n_chunks + 1);
    const auto hash_chunk = [&](int64_t chunk) {
        const auto c = static_cast<size_t>(chunk);
        const size_t begin = c * kFingerprintChunkBytes;
        const size_t size = std::min(kFingerprintChunkBytes, bytes.size() - begin);
        const XXH128_hash_t h = XXH3_128bits(bytes.data() + begin, size);
        digests[2 * c] = h.high64;
        digests[2 * c + 1] = h.low64;
    };
    if (n_chunks > 1) {
        ThreadPool pool(static_cast<int>(std::min<size_t>(n_chunks, static_cast<size_t>(default_thread_count()))));
        pool.for_each_index(static_cast<int64_t>(n_chunks), hash_chunk);
    } else if (n_chunks == 1) {
        hash_chunk(0);
    }
    digests.back() = bytes.size();
    return from_xxh128(XXH3_128bits(digests.data(), digests.size() * sizeof(uint64_t)));
}

ModelFingerprint fingerprint_model_file(const GgufFile& file, const std::string& memo_dir) {
    const std::optional<FileIdentity> before = memo_dir.empty() ? std::nullopt : identify(file.path());
    if (before) {
        if (auto remembered = read_memo(memo_path(memo_dir, *before), *before)) return *remembered;
    }
    const ModelFingerprint fingerprint = fingerprint_bytes(file.bytes());
    // Remember it only when the file did not change while it was hashed. (The file was opened just before
    // `before` was taken; a replacement in that instant is the one case the memo cannot see.)
    if (before && identify(file.path()) == before) {
        try {
            write_memo(memo_path(memo_dir, *before), *before, fingerprint);
        } catch (const std::exception&) {
            // An unwritable memo directory only means hashing again next time.
        }
    }
    return fingerprint;
}

std::string default_fingerprint_memo_dir() {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    if (xdg != nullptr && *xdg != '\0') return (std::filesystem::path(xdg) / "dendro" / "fingerprints").string();
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0') {
        return (std::filesystem::path(home) / ".cache" / "dendro" / "fingerprints").string();
    }
    return {};
}

}  // namespace dendro
