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
        fail("state snapshot of ", snapshot.tokens.size(), " tokens (n_layer ", snapshot.state.n_layer, ", d_conv ",
             snapshot.state.d_conv, ", d_inner ", snapshot.state.d_inner, ", d_state ", snapshot.state.d_state,
             ", ", snapshot.last_logits.size(), " logits) does not fit the model (n_layer ", hp.n_layer,
             ", d_conv ", hp.d_conv, ", d_inner ", hp.d_inner, ", d_state ", hp.d_state, ", n_vocab ", hp.n_vocab,
             ")");
    }
    backend.write_state(seq, snapshot.state);
}

}  // namespace dendro
