// The whole past of a Mamba sequence: per layer, the conv window (the last d_conv-1 conv inputs) and the
// SSM state (d_inner x d_state), fp32. Constant size whatever the sequence length.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace dendro {

struct SequenceState {
    int64_t n_layer = 0, d_conv = 0, d_inner = 0, d_state = 0;
    std::vector<float> conv;  // [layer][t in 0..d_conv-2, oldest first][channel]
    std::vector<float> ssm;   // [layer][channel][state]

    static SequenceState zeros(const ModelHparams& hp);
    size_t conv_per_layer() const { return static_cast<size_t>((d_conv - 1) * d_inner); }
    size_t ssm_per_layer() const { return static_cast<size_t>(d_inner * d_state); }
    float* conv_layer(int64_t l) { return conv.data() + l * conv_per_layer(); }
    float* ssm_layer(int64_t l) { return ssm.data() + l * ssm_per_layer(); }
    const float* conv_layer(int64_t l) const { return conv.data() + l * conv_per_layer(); }
    const float* ssm_layer(int64_t l) const { return ssm.data() + l * ssm_per_layer(); }
    size_t bytes() const { return (conv.size() + ssm.size()) * sizeof(float); }
    bool matches(const ModelHparams& hp) const;
};

}  // namespace dendro
