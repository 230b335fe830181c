// Dendro's quantizers of fp32 values into ggml's block types (layouts in ggml_quant_blocks.h and ggml_types.h).
// The legacy quants and Q8_0 follow ggml's published reference formulas exactly, so their bytes equal what
// gguf-py and llama.cpp write. The k-quants choose each sub-block's scale (and min) by an error-minimising
// search, the method llama.cpp publishes for its reference k-quantizers (see ggml_quantize.cpp); their bytes
// may differ from llama.cpp's in rare near-ties, their error is that of the same method.
#pragma once

#include <cstdint>

#include "format/ggml_quant_blocks.h"
#include "format/ggml_types.h"

namespace dendro {

// Each writes n_blocks whole blocks from x (n_blocks * block size values). Finite input gives finite scales;
// an all-zero block has zero scales.
void quantize_q4_0(const float* x, BlockQ4_0* blocks, int64_t n_blocks);
void quantize_q4_1(const float* x, BlockQ4_1* blocks, int64_t n_blocks);
void quantize_q5_0(const float* x, BlockQ5_0* blocks, int64_t n_blocks);
void quantize_q5_1(const float* x, BlockQ5_1* blocks, int64_t n_blocks);
void quantize_q8_0(const float* x, BlockQ8_0* blocks, int64_t n_blocks);
void quantize_q4_k(const float* x, BlockQ4_K* blocks, int64_t n_blocks);
void quantize_q5_k(const float* x, BlockQ5_K* blocks, int64_t n_blocks);
void quantize_q6_k(const float* x, BlockQ6_K* blocks, int64_t n_blocks);

// Whether quantize_row (ggml_types.h) can write `type`: F32, F16, BF16 and the types above.
bool can_quantize_to(GgmlType type);

}  // namespace dendro
