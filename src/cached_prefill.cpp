#include "cached_prefill.h"

#include <algorithm>
#include <exception>
#include <future>

#include "error.h"

namespace dendro {

CachedPrefillStats prefill_with_cache(Backend& backend, int seq, std::span<const int32_t> tokens, PrefixStore* store,
                                      int64_t checkpoint_every, std::span<float> logits) {
    const MambaHparams& hp = backend.hparams();
    const auto n = static_cast<int64_t>(tokens.size());
    if (n == 0) fail("prefill: the prompt has no tokens");
    if (static_cast<int64_t>(logits.size()) != hp.n_vocab) {
        fail("prefill: expected room for ", hp.n_vocab, " logits, got ", logits.size());
    }
    if (checkpoint_every < 0) fail("prefill: the checkpoint interval must be >= 0, got ", checkpoint_every);

    CachedPrefillStats stats;
    // A reset even before a restore: it also restarts whatever else the slot keeps (its sampling stream).
    backend.reset(seq);
    std::optional<StateSnapshot> hit = store != nullptr ? store->longest_prefix(tokens) : std::nullopt;
    if (hit) {
        restore_snapshot(backend, seq, *hit);
        stats.reused_tokens = hit->n_tokens();
        if (stats.reused_tokens == n) {
            std::copy(hit->last_logits.begin(), hit->last_logits.end(), logits.begin());
            return stats;
        }
        hit.reset();  // its state lives in the backend now
    }

    const bool checkpoints = store != nullptr && store->keeps_checkpoints() && checkpoint_every > 0;
    bool storing = store != nullptr;
    // A checkpoint is written on another thread while the next chunk computes; one write at a time, so the
    // store is never used by two threads at once and at most two snapshots are held.
    std::future<void> writing;
    const auto finish_writing = [&] {
        if (!writing.valid()) return;
        try {
            writing.get();
            ++stats.snapshots_stored;
        } catch (const std::exception& e) {  // the cache is an optimization: its failures never fail a prefill
            store->warn(concat(e.what(), "; not saving prompt states for this run"));
            storing = false;
        }
    };
    int64_t pos = stats.reused_tokens;
    while (pos < n) {
        const int64_t end = checkpoints ? std::min(n, (pos / checkpoint_every + 1) * checkpoint_every) : n;
        backend.prefill(seq, tokens.subspan(static_cast<size_t>(pos), static_cast<size_t>(end - pos)), logits,
                        /*all_logits=*/false);
        stats.computed_tokens += end - pos;
        pos = end;
        if (!storing || (pos < n && !checkpoints)) continue;
        StateSnapshot snapshot = take_snapshot(backend, seq, tokens.first(static_cast<size_t>(pos)), logits);
        finish_writing();
        if (!storing) continue;
        writing = std::async(std::launch::async, [store, snapshot = std::move(snapshot), end_of_prompt = pos == n] {
            store->store(snapshot, end_of_prompt);
        });
    }
    finish_writing();
    return stats;
}

}  // namespace dendro
