// The fixed-size recurrent state of one Mamba sequence.
#include "cache/sequence_state.h"

namespace dendro {

SequenceState SequenceState::zeros(const ModelHparams& hp) {
    SequenceState s;
    s.n_layer = hp.n_layer;
    s.d_conv = hp.d_conv;
    s.d_inner = hp.d_inner;
    s.d_state = hp.d_state;
    s.conv.assign(static_cast<size_t>(hp.n_layer) * s.conv_per_layer(), 0.0f);
    s.ssm.assign(static_cast<size_t>(hp.n_layer) * s.ssm_per_layer(), 0.0f);
    return s;
}

bool SequenceState::matches(const ModelHparams& hp) const {
    return n_layer == hp.n_layer && d_conv == hp.d_conv && d_inner == hp.d_inner && d_state == hp.d_state &&
           conv.size() == static_cast<size_t>(n_layer) * conv_per_layer() &&
           ssm.size() == static_cast<size_t>(n_layer) * ssm_per_layer();
}

}  // namespace dendro
