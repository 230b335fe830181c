// The fixed-size recurrent state of one sequence.
#include "cache/sequence_state.h"

#include "common/error.h"

namespace dendro {

StateShape StateShape::of(const ModelHparams& hp) {
    return StateShape{hp.arch, hp.n_layer, hp.d_conv, hp.conv_channels(), hp.d_inner, hp.d_state};
}

std::string StateShape::text() const {
    return concat(architecture_name(arch), ": ", n_layer, " layers, conv ", d_conv - 1, " x ", conv_channels, ", ssm ",
                  d_inner, " x ", d_state);
}

SequenceState SequenceState::zeros(const ModelHparams& hp) {
    SequenceState s;
    s.shape = StateShape::of(hp);
    s.conv.assign(static_cast<size_t>(hp.n_layer) * s.shape.conv_per_layer(), 0.0f);
    s.ssm.assign(static_cast<size_t>(hp.n_layer) * s.shape.ssm_per_layer(), 0.0f);
    return s;
}

bool SequenceState::matches(const ModelHparams& hp) const {
    return shape == StateShape::of(hp) && conv.size() == static_cast<size_t>(shape.n_layer) * shape.conv_per_layer() &&
           ssm.size() == static_cast<size_t>(shape.n_layer) * shape.ssm_per_layer();
}

}  // namespace dendro
