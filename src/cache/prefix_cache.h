// `--cache-dir DIR`: an automatic, size-bounded cache of prompt-prefix states shared by any number of
// processes. Each entry is a state file (state_file.h) named by the model's fingerprint, the prefix length
// and a hash of the prefix's token ids:
//     DIR/entries/<fingerprint>-<n_tokens>-<prefix hash>.v<format version>.dstate
// so a lookup lists the directory and tries the longest names that match the prompt, verifying the tokens
// inside. Entries appear by atomic rename, so readers see whole files or none, and tolerate entries that
// vanish under them. Least recently used entries (file mtime, refreshed on every hit) are evicted beyond
// the size bound, under an flock on DIR/dendro-cache.lock, which also marks DIR as a Dendro cache.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/model_fingerprint.h"
#include "cache/prefix_store.h"

namespace dendro {

inline constexpr const char* kCacheLockFile = "dendro-cache.lock";

// XXH3-64 of the little-endian int32 token ids (the hash in entry names).
uint64_t token_prefix_hash(std::span<const int32_t> tokens);

struct CacheEntry {
    std::string id;  // the file name without ".v<version>.dstate"
    std::filesystem::path path;
    ModelFingerprint model;
    int64_t n_tokens = 0;
    uint64_t prefix_hash = 0;
    uint32_t version = 0;  // state-file format version the entry was written in
    uint64_t bytes = 0;
    std::filesystem::file_time_type last_used;
};

// The on-disk layout of a cache directory and the operations on it that need its lock.
class CacheDirectory {
public:
    // Opens DIR as a cache. With create, makes it when missing; a directory that exists, is not empty and is
    // not a Dendro cache is refused either way (so `cache clear ~` deletes nothing).
    static CacheDirectory open(const std::string& dir, bool create);

    const std::filesystem::path& path() const { return root_; }
    std::filesystem::path fingerprint_memo_dir() const;
    std::filesystem::path entry_path(const ModelFingerprint& model, int64_t n_tokens, uint64_t prefix_hash) const;

    // Every entry (any version), skipping files that vanish while being listed.
    std::vector<CacheEntry> entries() const;
    // Entries whose id starts with `id_prefix`; throws dendro::Error unless exactly one does.
    CacheEntry find(const std::string& id_prefix) const;
    // Marks an entry as just used (for LRU); a vanished entry is ignored.
    void touch(const std::filesystem::path& entry) const;

    // Under the lock: removes least recently used entries until they total at most max_bytes, and the temp
    // files of writers that were killed (remove_stale_temp_files). Returns the number of entries removed.
    size_t evict_to(uint64_t max_bytes) const;
    // Under the lock: removes the given entries / every entry, fingerprint memo and killed writer's temp
    // file (a running writer's is left to it, as in eviction).
    size_t remove(const std::vector<CacheEntry>& victims) const;
    size_t clear() const;

private:
    explicit CacheDirectory(std::filesystem::path root) : root_(std::move(root)) {}
    std::filesystem::path entries_dir() const;
    std::filesystem::path root_;
};

class PrefixCache : public PrefixStore {
public:
    PrefixCache(CacheDirectory dir, const ModelFingerprint& model, const ModelHparams& hparams, uint64_t max_bytes,
                WarningSink warn);

    std::optional<StateSnapshot> longest_prefix(std::span<const int32_t> tokens) override;
    bool store(const StateSnapshot& snapshot, bool end_of_prompt) override;
    bool keeps_checkpoints() const override { return true; }

    const CacheDirectory& directory() const { return dir_; }

private:
    CacheDirectory dir_;
    ModelFingerprint model_;
    ModelHparams hparams_;
    uint64_t max_bytes_;
    bool warned_too_large_ = false;
};

}  // namespace dendro
