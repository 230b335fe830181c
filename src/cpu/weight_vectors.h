// The small per-layer tensors (norm weights, biases, conv taps, A, D) as fp32 copies, and their sizes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "model/model.h"

namespace dendro::cpu {

// The tensor's elements as fp32, row after row; empty when the (optional) tensor is absent.
std::vector<float> to_f32(const TensorView& t);
// The same transposed: element i of every row, then element i + 1 (conv taps by window slot, for vectors
// over channels).
std::vector<float> to_f32_transposed(const TensorView& t);

uint64_t float_bytes(std::initializer_list<const std::vector<float>*> vectors);

}  // namespace dendro::cpu
