// The fixed-size recurrent state of one sequence.
#include "cache/sequence_state.h"

#include "common/error.h"

namespace dendro {

StateShape StateShape::of(const ModelHparams& hp) {
    return StateShape{hp.arch, hp.n_layer, hp.d_conv, hp.conv_channels(), hp.d_inner, hp.d_state};
}

bool StateShape::is_possible() const {
    if (n_layer < 1 || d_conv < 1 || conv_channels < 1 || d_inner < 1 || d_state < 1) return false;
    if (arch == Architecture::Mamba1) return conv_channels == d_inner;
    // Both positive, so the difference cannot overflow; halving before dividing keeps 2 * d_state from it.
    const int64_t b_and_c = conv_channels - d_inner;
    return b_and_c > 0 && b_and_c % 2 == 0 && (b_and_c / 2) % d_state == 0;
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
