#include "serve/ram_prefix_tier.h"

#include <algorithm>
#include <set>

#include "cache/prefix_cache.h"
#include "common/error.h"

namespace dendro::serve {
namespace {

uint64_t snapshot_bytes(const StateSnapshot& s) {
    return s.state.bytes() + s.tokens.size() * sizeof(int32_t) + s.last_logits.size() * sizeof(float);
}

}  // namespace

RamPrefixTier::RamPrefixTier(const ModelFingerprint& model, uint64_t max_bytes, std::unique_ptr<PrefixStore> disk,
                             WarningSink warn)
    : PrefixStore(std::move(warn)), model_(model), max_bytes_(max_bytes), disk_(std::move(disk)) {
    if (disk_) writer_ = std::thread([this] { write_to_disk(); });
}

RamPrefixTier::~RamPrefixTier() {
    {
        std::lock_guard lock(pending_mutex_);
        stopping_ = true;
    }
    pending_changed_.notify_all();
    if (writer_.joinable()) writer_.join();
}

void RamPrefixTier::flush() {
    std::unique_lock lock(pending_mutex_);
    pending_changed_.wait(lock, [&] { return pending_.empty() && !writing_; });
}

void RamPrefixTier::write_to_disk() {
    std::unique_lock lock(pending_mutex_);
    for (;;) {
        pending_changed_.wait(lock, [&] { return !pending_.empty() || stopping_; });
        if (pending_.empty()) return;  // stopping, and everything is written
        PendingWrite write = std::move(pending_.front());
        pending_.pop_front();
        writing_ = true;
        lock.unlock();
        pending_changed_.notify_all();
        try {
            std::lock_guard disk_lock(disk_mutex_);
            disk_->store(*write.snapshot, write.end_of_prompt);
        } catch (const std::exception& e) {
            warn(concat("disk tier: ", e.what()));
        }
        lock.lock();
        writing_ = false;
        pending_changed_.notify_all();
    }
}

RamPrefixTier::Key RamPrefixTier::key(std::span<const int32_t> prefix) const {
    return {model_.high, model_.low, static_cast<int64_t>(prefix.size()), token_prefix_hash(prefix)};
}

std::optional<StateSnapshot> RamPrefixTier::ram_lookup(std::span<const int32_t> tokens) {
    std::set<int64_t, std::greater<>> lengths;
    for (const auto& [k, it] : index_) {
        if (std::get<2>(k) <= static_cast<int64_t>(tokens.size())) lengths.insert(std::get<2>(k));
    }
    for (int64_t n : lengths) {
        const auto prefix = tokens.first(static_cast<size_t>(n));
        const auto found = index_.find(key(prefix));
        if (found == index_.end()) continue;
        const StateSnapshot& s = *found->second->second.snapshot;
        if (!std::equal(s.tokens.begin(), s.tokens.end(), prefix.begin(), prefix.end())) continue;  // a hash collision
        lru_.splice(lru_.begin(), lru_, found->second);
        return s;
    }
    return std::nullopt;
}

std::string RamPrefixTier::describe_ram_miss(std::span<const int32_t> tokens) const {
    if (lru_.empty()) return "the RAM tier is empty";
    size_t best_common = 0, best_length = 0;
    for (const auto& [k, entry] : lru_) {
        const std::vector<int32_t>& t = entry.snapshot->tokens;
        const size_t common =
            static_cast<size_t>(std::mismatch(t.begin(), t.end(), tokens.begin(), tokens.end()).first - t.begin());
        if (common > best_common) best_common = common, best_length = t.size();
    }
    if (best_common == 0) {
        return concat("none of the RAM tier's ", lru_.size(), " entries shares a first token with the prompt");
    }
    return concat("no RAM entry is a prefix of the ", tokens.size(), "-token prompt: the closest of ", lru_.size(),
                  " shares ", best_common, " tokens of its ", best_length, " (no checkpoint inside the shared part)");
}

std::optional<StateSnapshot> RamPrefixTier::longest_prefix(std::span<const int32_t> tokens) {
    std::optional<StateSnapshot> hit = ram_lookup(tokens);
    const std::string ram_note = hit ? concat("RAM hit of ", hit->n_tokens(), " tokens") : describe_ram_miss(tokens);
    if (disk_ && (!hit || hit->n_tokens() < static_cast<int64_t>(tokens.size()))) {
        std::optional<StateSnapshot> from_disk;
        {
            std::lock_guard disk_lock(disk_mutex_);
            from_disk = disk_->longest_prefix(tokens);
        }
        if (from_disk && (!hit || from_disk->n_tokens() > hit->n_tokens())) {
            insert(std::make_shared<const StateSnapshot>(*from_disk));
            last_lookup_ = concat("disk hit of ", from_disk->n_tokens(), " tokens (", ram_note, ")");
            return from_disk;
        }
        last_lookup_ =
            concat(ram_note, hit ? "; the disk tier has none longer" : "; the disk tier has no prefix of it either");
        return hit;
    }
    last_lookup_ = concat(ram_note, disk_ || hit ? "" : " (no disk tier: --cache-dir not given)");
    return hit;
}

void RamPrefixTier::insert(const std::shared_ptr<const StateSnapshot>& snapshot) {
    const uint64_t bytes = snapshot_bytes(*snapshot);
    if (bytes > max_bytes_) return;
    const Key k = key(snapshot->tokens);
    if (const auto found = index_.find(k); found != index_.end()) {
        lru_.splice(lru_.begin(), lru_, found->second);
        return;
    }
    while (bytes_ + bytes > max_bytes_ && !lru_.empty()) {
        bytes_ -= lru_.back().second.bytes;
        index_.erase(lru_.back().first);
        lru_.pop_back();
    }
    lru_.emplace_front(k, Entry{snapshot, bytes});
    index_[k] = lru_.begin();
    bytes_ += bytes;
}

bool RamPrefixTier::store(const StateSnapshot& snapshot, bool end_of_prompt) {
    const bool had = index_.count(key(snapshot.tokens)) > 0;
    if (had && !disk_) return false;
    const auto shared = std::make_shared<const StateSnapshot>(snapshot);
    insert(shared);
    // An entry already in RAM was written to disk when it was stored, or came from there.
    if (had || !disk_ || !(end_of_prompt || disk_->keeps_checkpoints())) {
        return !had && index_.count(key(snapshot.tokens)) > 0;
    }
    {
        std::unique_lock lock(pending_mutex_);
        pending_changed_.wait(lock, [&] { return pending_.size() < kMaxPendingWrites; });
        pending_.push_back({shared, end_of_prompt});
    }
    pending_changed_.notify_all();
    return true;  // queued for the disk tier
}

}  // namespace dendro::serve
