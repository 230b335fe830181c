// Writes a Mamba-1 or Mamba-2 GGUF file (llama.cpp architecture "mamba" or "mamba2", after hp.arch) with
// random weights of plausible scale, for tests and benchmarks at any shape. Tensors are generated one at a
// time while the file is written, in parallel and from a counter-based hash, so even multi-gigabyte files
// are quick to make and the same seed gives the same file.
#pragma once

#include <cstdint>
#include <string>

#include "format/ggml_types.h"
#include "model/model.h"
#include "tensor_types.h"

namespace dendro {

struct RandomModelOptions {
    GgmlType vector_type = GgmlType::F32;  // norms, biases, conv weights, A and D: F32, F16 or BF16
    bool conv_bias = true;                 // HF use_conv_bias
    bool proj_bias = false;                // HF use_bias: ssm_in.bias and ssm_out.bias
    bool conv_3d = false;                  // store the conv weight as {d_conv, 1, d_inner}
    // At most one of the two vocabularies (synthetic_vocab.h); without one the file has no tokenizer keys.
    // byte_tokenizer: each byte a token of its own (n_vocab >= 256), for tests that want byte ids.
    bool byte_tokenizer = false;
    // bpe_vocabulary: a GPT-NeoX-style BPE vocabulary with merges (n_vocab >= 257), which llama.cpp loads too.
    bool bpe_vocabulary = false;
};

// hp.n_vocab, d_model, n_layer, d_conv, d_inner, d_state, norm_eps and the mixer's own (dt_rank and dt_b_c_rms;
// n_head, n_group and the time-step limit) are written, with
// every key llama.cpp's "mamba" loader reads (as llama.cpp's converter writes them, general.file_type
// included); the weight matrices are stored as `dendro convert --outtype` stores them (tensor_types.h: e.g.
// q4_k_m mixes Q4_K, Q6_K and fallbacks, q8_0 falls back to F16 for rows not a multiple of 32). `tied` leaves
// out output.weight so that the lm_head is token_embd. With the default options every tensor is one
// llama.cpp's loader expects; proj_bias and conv_3d make files only Dendro reads. Throws dendro::Error on
// invalid shapes or I/O failure.
void write_random_mamba_gguf(const std::string& path, const ModelHparams& hp, OutType out_type, uint64_t seed,
                             bool tied, const RandomModelOptions& options = {});
// The same with matrix_type F32, F16, BF16 or Q8_0 (the out type of that name).
void write_random_mamba_gguf(const std::string& path, const ModelHparams& hp, GgmlType matrix_type, uint64_t seed,
                             bool tied, const RandomModelOptions& options = {});

}  // namespace dendro
