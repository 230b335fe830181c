// The whole past of a sequence of a recurrent model: per layer, the conv window (the last d_conv-1 conv
// inputs) and the SSM state, fp32. Constant size whatever the sequence length. The same layout serves both
// mixers: Mamba-1's conv runs over x (d_inner channels) and its SSM state is d_inner x d_state; Mamba-2's
// conv runs over x, B and C (conv_channels) and its SSM state is n_head x head_dim x d_state, which is
// d_inner x d_state with channel = head * head_dim + p.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace dendro {

struct StateShape {
    Architecture arch = Architecture::Mamba1;
    int64_t n_layer = 0, d_conv = 0, conv_channels = 0, d_inner = 0, d_state = 0;

    static StateShape of(const ModelHparams& hp);
    size_t conv_per_layer() const { return static_cast<size_t>((d_conv - 1) * conv_channels); }
    size_t ssm_per_layer() const { return static_cast<size_t>(d_inner * d_state); }
    // A sequence's whole state, every layer's conv window and SSM state.
    uint64_t bytes() const { return static_cast<uint64_t>(n_layer) * (conv_per_layer() + ssm_per_layer()) * sizeof(float); }
    bool operator==(const StateShape&) const = default;
    // Some model has this shape: positive sizes whose conv channels are Mamba-1's d_inner, or Mamba-2's
    // d_inner plus B and C for a whole number of groups (2 * n_group * d_state).
    bool is_possible() const;
    // "mamba2: 24 layers, conv 3 x 1792, ssm 1536 x 128" (for messages).
    std::string text() const;
};

struct SequenceState {
    StateShape shape;
    std::vector<float> conv;  // [layer][t in 0..d_conv-2, oldest first][conv channel]
    std::vector<float> ssm;   // [layer][channel][state]

    static SequenceState zeros(const ModelHparams& hp);
    float* conv_layer(int64_t l) { return conv.data() + l * shape.conv_per_layer(); }
    float* ssm_layer(int64_t l) { return ssm.data() + l * shape.ssm_per_layer(); }
    const float* conv_layer(int64_t l) const { return conv.data() + l * shape.conv_per_layer(); }
    const float* ssm_layer(int64_t l) const { return ssm.data() + l * shape.ssm_per_layer(); }
    size_t bytes() const { return (conv.size() + ssm.size()) * sizeof(float); }
    // The shape is the model's and the arrays hold what the shape says.
    bool matches(const ModelHparams& hp) const;
};

}  // namespace dendro
