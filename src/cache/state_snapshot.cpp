#include "cache/state_snapshot.h"

#include "common/error.h"

namespace dendro {

bool StateSnapshot::fits(const ModelHparams& hp) const {
    return !tokens.empty() && state.matches(hp) && static_cast<int64_t>(last_logits.size()) == hp.n_vocab;
}

StateSnapshot take_snapshot(const Backend& backend, int seq, std::span<const int32_t> tokens,
                            std::span<const float> last_logits) {
    StateSnapshot snapshot;
    backend.read_state(seq, snapshot.state);
    snapshot.tokens.assign(tokens.begin(), tokens.end());
    snapshot.last_logits.assign(last_logits.begin(), last_logits.end());
    return snapshot;
}

void restore_snapshot(Backend& backend, int seq, const StateSnapshot& snapshot) {
    const ModelHparams& hp = backend.hparams();
    if (!snapshot.fits(hp)) {
        fail("state snapshot of ", snapshot.tokens.size(), " tokens (", snapshot.state.shape.text(), ", ",
             snapshot.last_logits.size(), " logits) does not fit the model (", StateShape::of(hp).text(), ", ",
             hp.n_vocab, " logits)");
    }
    backend.write_state(seq, snapshot.state);
}

}  // namespace dendro
