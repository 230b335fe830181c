// What the CPU backend hands a layer's mixer: a batch of token rows from one or more sequences, the block's
// normalised input, the residual stream the mixer's output is added to, and the sequences' states. Each
// mixer (mixer_mamba1.cpp, mixer_mamba2.cpp) is run by every thread of the pool inside the forward task and
// meets the others at the pool's barriers; it returns after a final barrier, with the residual updated.
#pragma once

#include <cstdint>
#include <span>

#include <vector>

#include "cache/sequence_state.h"
#include "cpu/matmul.h"
#include "model/model.h"

namespace dendro::cpu {

// The tokens of one sequence inside the current batch: rows [first_row, first_row + n_tokens).
struct SeqSpan {
    int slot;
    int64_t first_row;
    int64_t n_tokens;
};

struct MixerBatch {
    std::span<const SeqSpan> spans;
    int64_t n_rows = 0;
    const float* normed = nullptr;  // n_rows x d_model: rms_norm(resid) * attn_norm
    float* resid = nullptr;         // n_rows x d_model: the mixer's output is added here
    std::span<SequenceState> slots;
    int64_t layer = 0;               // which layer of the states
};

// Batches of at most this many rows (decode steps) are normalised by every thread, each into its own
// buffer, instead of a share of the rows each and a barrier (the block's norm; Mamba-2's gated norm): a
// row costs a thread about a microsecond, and each barrier was one of the five a layer's threads met at.
inline constexpr int64_t kPrivateNormRows = 16;

// The mixers' last step: out = y W_out^T (+ bias) added to the residual, the model's channels shared out
// by matmul_team_rows, then a barrier. `out` has room for n_rows x d_model.
void add_out_proj(const TensorView& w_out, const std::vector<float>& out_bias, ConstRows y, float* out,
                  const MixerBatch& batch, const Team& team);

}  // namespace dendro::cpu
