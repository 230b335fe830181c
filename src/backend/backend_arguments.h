// Checks of the arguments of Backend calls, shared by every backend so that a misuse is refused before any
// compute and reads the same on every device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "model/model.h"
#include "cache/sequence_state.h"

namespace dendro {

void check_sequence_slot(int seq, int n_seq_max, const char* operation);
void check_token_ids(std::span<const int32_t> tokens, int64_t n_vocab);
// prefill(): a valid slot, at least one valid token, and room for the logits asked for.
void check_prefill_arguments(const ModelHparams& hp, int n_seq_max, int seq, std::span<const int32_t> tokens,
                             size_t logits_size, bool all_logits);
// decode()-like calls: one valid token per slot, slots valid and distinct.
void check_batch_arguments(const ModelHparams& hp, int n_seq_max, std::span<const int> seqs,
                           std::span<const int32_t> tokens, const char* operation);
void check_logits_room(size_t logits_size, size_t needed, const char* operation);
void check_state_fits(const ModelHparams& hp, const SequenceState& state, const char* operation);

}  // namespace dendro
