// Random blocks of ggml's legacy quants and k-quants, and random Mamba models whose weight matrices are such
// blocks: the quant bits are random and only the fp16 scales are chosen (blocks dequantize to values of
// about the size asked for), so a reader meets every bit pattern, including those of the types Dendro does
// not quantize to (Q2_K, Q3_K, IQ4_NL) and of scales no quantizer writes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "format/ggml_types.h"
#include "model/model.h"
#include "random_model.h"

namespace dendro::test {

// The types whose blocks random_quant_blocks makes: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K.
const std::vector<GgmlType>& read_only_quant_types();

// n_blocks random blocks of `type` whose dequantized values reach about +-max_abs in every block.
std::vector<uint8_t> random_quant_blocks(GgmlType type, int64_t n_blocks, uint64_t seed, float max_abs);

// Shapes with the multiples of 256 that k-quant rows need (d_model, d_inner; n_vocab and dt_rank are not,
// so ssm_dt is written in a fallback type).
ModelHparams tiny_hparams_k_quants();

// The type a weight matrix (token_embd, output, ssm_in, ssm_x, ssm_dt, ssm_out) is stored in, from its name
// and row length; F32, F16, BF16 or one of read_only_quant_types().
using MatrixTypeChoice = std::function<GgmlType(const std::string& name, int64_t row_length)>;
// Each matrix of `type` where its rows are whole blocks, else F16 (as llama.cpp's quantizer falls back).
MatrixTypeChoice matrices_of_type(GgmlType type);

// Writes a random model (write_random_mamba_gguf with F32 matrices) to `path`, then stores each weight matrix
// in the type `choice` gives: floats converted, quant types as random blocks of the F32 matrix's magnitude.
void write_random_quant_mamba_gguf(const std::string& path, const ModelHparams& hp, const MatrixTypeChoice& choice,
                                   uint64_t seed, bool tied, const RandomModelOptions& options = {});

}  // namespace dendro::test
