#include "cache/cached_prefill.h"

#include <algorithm>
#include <exception>

#include "common/error.h"

namespace dendro {
namespace {

// Waits for a write and counts the snapshot when it was written; false (after a warning) when the write
// failed. The cache is an optimization: its failures never fail a prefill.
bool finish_write(std::future<bool>& writing, PrefixStore* store, CachedPrefillStats& stats) {
    if (!writing.valid()) return true;
    try {
        if (writing.get()) ++stats.snapshots_stored;
        return true;
    } catch (const std::exception& e) {
        store->warn(concat(e.what(), "; not saving prompt states for this run"));
        return false;
    }
}

}  // namespace

CachedPrefill::CachedPrefill(PrefixStore* store, const CachedPrefillStats& stats, std::future<bool> writing)
    : store_(store), stats_(stats), writing_(std::move(writing)) {}

CachedPrefill::~CachedPrefill() {
    try {
        finish();
    } catch (...) {
        // A throwing warning sink must not end the program from a destructor.
    }
}

const CachedPrefillStats& CachedPrefill::finish() {
    finish_write(writing_, store_, stats_);
    return stats_;
}

CachedPrefill prefill_with_cache(Backend& backend, int seq, std::span<const int32_t> tokens, PrefixStore* store,
                                 int64_t checkpoint_every, std::span<float> logits) {
    const ModelHparams& hp = backend.hparams();
    const auto n = static_cast<int64_t>(tokens.size());
    if (n == 0) fail("prefill: the prompt has no tokens");
    if (static_cast<int64_t>(logits.size()) != hp.n_vocab) {
        fail("prefill: expected room for ", hp.n_vocab, " logits, got ", logits.size());
    }
    if (checkpoint_every < 0) fail("prefill: the checkpoint interval must be >= 0, got ", checkpoint_every);

    CachedPrefillStats stats;
    // A reset even before a restore: it also restarts whatever else the slot keeps (its sampling stream).
    backend.reset(seq);
    std::optional<StateSnapshot> hit;
    if (store != nullptr) {
        try {
            hit = store->longest_prefix(tokens);
        } catch (const std::exception& e) {  // e.g. the cache's lock cannot be taken: compute the prompt
            store->warn(concat(e.what(), "; computing the whole prompt"));
        }
    }
    if (hit) {
        restore_snapshot(backend, seq, *hit);
        stats.reused_tokens = hit->n_tokens();
        if (stats.reused_tokens == n) {
            std::copy(hit->last_logits.begin(), hit->last_logits.end(), logits.begin());
            return CachedPrefill(store, stats, {});
        }
        hit.reset();  // its state lives in the backend now
    }

    // Checkpoints where a split keeps the bits of one prefill (a whole number of the backend's exact splits),
    // so that resuming from one gives what computing the whole prompt gives.
    checkpoint_every = exact_checkpoint_interval(backend, checkpoint_every);
    const bool checkpoints = store != nullptr && store->keeps_checkpoints() && checkpoint_every > 0;
    bool storing = store != nullptr;
    // One write at a time, so the store is never used by two threads at once and at most two snapshots
    // are held; the last one is left running for the caller.
    std::future<bool> writing;
    int64_t pos = stats.reused_tokens;
    while (pos < n) {
        const int64_t end = checkpoints ? std::min(n, (pos / checkpoint_every + 1) * checkpoint_every) : n;
        backend.prefill(seq, tokens.subspan(static_cast<size_t>(pos), static_cast<size_t>(end - pos)), logits,
                        /*all_logits=*/false);
        stats.computed_tokens += end - pos;
        pos = end;
        if (!storing || (pos < n && !checkpoints)) continue;
        StateSnapshot snapshot = take_snapshot(backend, seq, tokens.first(static_cast<size_t>(pos)), logits);
        storing = finish_write(writing, store, stats);
        if (!storing) continue;
        writing = std::async(std::launch::async, [store, snapshot = std::move(snapshot), end_of_prompt = pos == n] {
            return store->store(snapshot, end_of_prompt);
        });
    }
    return CachedPrefill(store, stats, std::move(writing));
}

}  // namespace dendro
