// The server's prefix cache: a RAM tier of state snapshots (least recently used evicted beyond a byte bound)
// in front of an optional disk tier (the --cache-dir PrefixCache, shared with other processes). Entries
// are keyed by the model's fingerprint and the token prefix (its length and hash, the tokens verified on a
// hit). A lookup takes the longer of the RAM and disk hits; a disk hit is copied into RAM; a store goes to
// RAM at once and to disk on a writer thread of the tier's own, so that the scheduler never waits for a
// file (it waits only when kMaxPendingWrites are queued, or when a lookup meets a write in progress).
// Called by one thread (the scheduler's); flush() or destruction waits for every queued write.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include "cache/prefix_store.h"
#include "model/model_fingerprint.h"

namespace dendro::serve {

class RamPrefixTier : public PrefixStore {
public:
    // max_bytes 0 keeps nothing in RAM (every lookup goes to the disk tier). `disk` may be null.
    RamPrefixTier(const ModelFingerprint& model, uint64_t max_bytes, std::unique_ptr<PrefixStore> disk,
                  WarningSink warn);
    ~RamPrefixTier() override;
    RamPrefixTier(const RamPrefixTier&) = delete;
    RamPrefixTier& operator=(const RamPrefixTier&) = delete;

    static constexpr size_t kMaxPendingWrites = 32;

    std::optional<StateSnapshot> longest_prefix(std::span<const int32_t> tokens) override;
    bool store(const StateSnapshot& snapshot, bool end_of_prompt) override;
    bool keeps_checkpoints() const override { return true; }

    // Returns when every store so far is on disk (or failed, with a warning).
    void flush();

    // Why the last lookup found nothing (or where its hit came from), for the log.
    const std::string& last_lookup() const { return last_lookup_; }
    size_t ram_entries() const { return lru_.size(); }
    uint64_t ram_bytes() const { return bytes_; }

private:
    struct Entry {
        std::shared_ptr<const StateSnapshot> snapshot;
        uint64_t bytes = 0;
    };
    using Key = std::tuple<uint64_t, uint64_t, int64_t, uint64_t>;  // fingerprint halves, prefix length, prefix hash
    using Lru = std::list<std::pair<Key, Entry>>;                   // most recently used first

    Key key(std::span<const int32_t> prefix) const;
    std::optional<StateSnapshot> ram_lookup(std::span<const int32_t> tokens);
    std::string describe_ram_miss(std::span<const int32_t> tokens) const;
    void insert(const std::shared_ptr<const StateSnapshot>& snapshot);
    void write_to_disk();  // the writer thread

    struct PendingWrite {
        std::shared_ptr<const StateSnapshot> snapshot;
        bool end_of_prompt = false;
    };

    ModelFingerprint model_;
    uint64_t max_bytes_;
    std::unique_ptr<PrefixStore> disk_;
    Lru lru_;
    std::map<Key, Lru::iterator> index_;
    uint64_t bytes_ = 0;
    std::string last_lookup_;

    std::mutex disk_mutex_;  // one disk operation at a time: a lookup or a write
    std::mutex pending_mutex_;
    std::condition_variable pending_changed_;
    std::deque<PendingWrite> pending_;
    bool writing_ = false;
    bool stopping_ = false;
    std::thread writer_;
};

}  // namespace dendro::serve
