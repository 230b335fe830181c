// A sequence's whole past in host memory: the recurrent state after a token prefix, the prefix itself and
// the logits its last token produced. Restoring one into any sequence slot resumes generation exactly
// where the prefix ended, without recomputing it (to fork between live slots, use Backend::copy_state).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "cache/sequence_state.h"

namespace dendro {

struct StateSnapshot {
    SequenceState state;
    std::vector<int32_t> tokens;     // the prefix the state has consumed
    std::vector<float> last_logits;  // n_vocab logits after its last token

    int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
    // Whether the snapshot has the shapes of a model with these hyper-parameters.
    bool fits(const ModelHparams& hp) const;
};

// Copies sequence `seq`'s state out of the backend; `tokens` and `last_logits` describe how it was reached.
StateSnapshot take_snapshot(const Backend& backend, int seq, std::span<const int32_t> tokens,
                            std::span<const float> last_logits);

// Writes the snapshot's state into sequence `seq`; throws dendro::Error when it does not fit the model.
void restore_snapshot(Backend& backend, int seq, const StateSnapshot& snapshot);

}  // namespace dendro
