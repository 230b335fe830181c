// Prompt prefill through a prefix store: restore the longest stored prefix of the prompt, run only the rest,
// and store what is new. Checkpoints land at every multiple of checkpoint_every tokens (absolute positions),
// so prompts that share only part of a prefix still resume from the nearest one below it. The state reached
// and the logits written are those of a plain prefill of the whole prompt (bit for bit when resuming from a
// checkpoint; a Mamba-2 prompt resumed from another prompt's end is within float rounding, docs/mamba2.md).
#pragma once

#include <cstdint>
#include <future>
#include <span>

#include "backend/backend.h"
#include "cache/prefix_store.h"

namespace dendro {

struct CachedPrefillStats {
    int64_t reused_tokens = 0;     // restored from the store
    int64_t computed_tokens = 0;   // run through the model
    int64_t snapshots_stored = 0;  // checkpoints and the end-of-prompt state written (not those already stored)
};

// What a cached prefill did. Its last write (the end-of-prompt state) may still be going on in the
// background, so that generation need not wait for the disk; finish() waits for it, as does destruction.
class CachedPrefill {
public:
    CachedPrefill(PrefixStore* store, const CachedPrefillStats& stats, std::future<bool> writing);
    CachedPrefill(CachedPrefill&&) = default;
    CachedPrefill& operator=(CachedPrefill&&) = delete;
    ~CachedPrefill();

    int64_t reused_tokens() const { return stats_.reused_tokens; }
    // Waits for the pending write (a failure is reported through the store's warning sink) and returns the
    // totals. Idempotent.
    const CachedPrefillStats& finish();

private:
    PrefixStore* store_;
    CachedPrefillStats stats_;
    std::future<bool> writing_;
};

// Prefills `tokens` (non-empty) into sequence `seq`, whose previous state is discarded, and writes the last
// position's logits (n_vocab floats). `store` may be null (plain prefill); checkpoint_every = 0 stores only
// the end of the prompt, and other intervals are rounded up to a multiple of backend.exact_prefill_split().
// Snapshots are written on a second thread, one at a time, while the prefill goes on.
// A store that fails to save is reported through its warning sink and not used again for this prompt; the
// prefill itself never depends on it.
CachedPrefill prefill_with_cache(Backend& backend, int seq, std::span<const int32_t> tokens, PrefixStore* store,
                                 int64_t checkpoint_every, std::span<float> logits);

}  // namespace dendro
