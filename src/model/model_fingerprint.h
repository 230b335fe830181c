// A model's identity for saved states: a 128-bit content hash of the whole GGUF file (metadata and tensor
// data), so a state saved for one model is never restored into another, whatever the files are called.
// Hashing a multi-gigabyte file takes seconds, so the result can be remembered in a memo directory keyed by
// the file's identity (path, device, inode, size, mtime, ctime); any change to the file misses the memo.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dendro {

class GgufFile;

struct ModelFingerprint {
    uint64_t high = 0, low = 0;

    std::string hex() const;  // 32 lowercase hex digits, high half first
    static std::optional<ModelFingerprint> from_hex(std::string_view text);
    bool operator==(const ModelFingerprint&) const = default;
};

// The content hash: XXH3-128 of each kFingerprintChunkBytes chunk (hashed in parallel), then XXH3-128 of
// the concatenated chunk digests together with the total length. See docs/state-file-format.md.
inline constexpr size_t kFingerprintChunkBytes = size_t{64} << 20;
ModelFingerprint fingerprint_bytes(std::span<const uint8_t> bytes);

// Fingerprint of an opened model file. With a non-empty memo_dir, a memo written there for this very file
// (same identity) is used instead of hashing, and a fresh hash is recorded; memo problems only cost a hash.
ModelFingerprint fingerprint_model_file(const GgufFile& file, const std::string& memo_dir);

// $XDG_CACHE_HOME/dendro/fingerprints, else $HOME/.cache/dendro/fingerprints, else "" (no memo).
std::string default_fingerprint_memo_dir();

}  // namespace dendro
