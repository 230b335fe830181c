// Test fixtures for the prompt-state cache: snapshots of made-up shapes filled with seeded random values.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"
#include "cache/state_snapshot.h"

namespace dendro::test {

// Small shapes: a state file of a few hundred bytes, so every truncation and byte flip can be tried.
ModelHparams tiny_state_hparams();
// A Mamba-2 state's shapes: 2 groups, so the conv window (x, B, C) is wider than the SSM's channels.
ModelHparams tiny_mamba2_state_hparams();

// A snapshot of `hp`'s shapes after tokens 0..n_tokens-1 of a sequence derived from `seed`; the state and
// logits are random values derived from `seed` and n_tokens.
StateSnapshot random_snapshot(const ModelHparams& hp, const std::vector<int32_t>& tokens, uint64_t seed);

// Token ids seeded by `seed`, each below n_vocab.
std::vector<int32_t> random_tokens(size_t count, int64_t n_vocab, uint64_t seed);

bool same_bits(const StateSnapshot& a, const StateSnapshot& b);

}  // namespace dendro::test
