// HF Mamba checkpoint directory (config.json, safetensors weights, tokenizer files) -> a GGUF file of
// llama.cpp's architecture "mamba", following llama.cpp's convert_hf_to_gguf.py (MambaModel): the same
// tensor names, shapes, transforms (A = -exp(A_log), conv1d weight squeezed to 2-D), per-tensor types and
// metadata keys. Differences: HF in/out projection biases (use_bias) are kept as blk.N.ssm_in.bias and
// blk.N.ssm_out.bias; the vocabulary is padded to the embedding rows rather than to a multiple of 8 (a
// token list longer than the embedding makes a file no runtime can load); Falcon-Mamba's mixer_rms_eps is
// kept under kMixerRmsEpsKey; intermediate_size need not be 2 * hidden_size. A Mamba2ForCausalLM directory
// becomes llama.cpp's architecture "mamba2" instead (hf_mamba2.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "format/ggml_types.h"
#include "tensor_types.h"

namespace dendro {

struct ConvertOptions {
    std::string model_dir;
    std::string output_path;
    OutType out_type = OutType::F16;
    std::string vocab_dir;  // tokenizer files; empty = model_dir
    // Called after each tensor is written with (tensors written, total).
    std::function<void(size_t, size_t)> progress;
    // Called with each warning (a part of the input that is left out of the output).
    std::function<void(const std::string&)> warn;
};

struct ConvertSummary {
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t output_bytes = 0;
    bool tied_output = false;
};

// Converts; writes the output atomically (nothing is created on failure). Throws dendro::Error naming the
// file, key or tensor at fault.
ConvertSummary convert_hf_to_gguf(const ConvertOptions& options);

}  // namespace dendro
