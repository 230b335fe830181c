// HF Mamba2ForCausalLM (Mamba-2, Codestral Mamba) -> llama.cpp's architecture "mamba2": which checkpoint
// tensor becomes which GGUF tensor, with which shape and transform, and the hyper-parameter keys, as
// llama.cpp's converter (convert_hf_to_gguf.py, Mamba2Model) writes them:
//   backbone.embeddings.weight  [n_vocab, d_model]   -> token_embd.weight      {d_model, n_vocab}
//   layers.N.norm.weight        [d_model]            -> blk.N.attn_norm.weight {d_model}
//   mixer.in_proj.weight        [in_rows, d_model]   -> blk.N.ssm_in.weight    {d_model, in_rows}
//   mixer.conv1d.weight         [conv_dim, 1, d_conv] -> blk.N.ssm_conv1d.weight {d_conv, conv_dim} (squeezed)
//   mixer.conv1d.bias           [conv_dim]           -> blk.N.ssm_conv1d.bias  (use_conv_bias)
//   mixer.dt_bias               [n_head]             -> blk.N.ssm_dt.bias      {n_head}
//   mixer.A_log                 [n_head]             -> blk.N.ssm_a            {1, n_head}, as A = -exp(A_log)
//   mixer.D                     [n_head]             -> blk.N.ssm_d            {1, n_head}
//   mixer.norm.weight           [d_inner]            -> blk.N.ssm_norm.weight  {d_inner / n_group, n_group}
//   mixer.out_proj.weight       [d_model, d_inner]   -> blk.N.ssm_out.weight   {d_inner, d_model}
//   backbone.norm_f.weight      [d_model]            -> output_norm.weight
//   lm_head.weight              [n_vocab, d_model]   -> output.weight, unless tied to the embedding
// with in_rows = 2 d_inner + 2 n_group d_state + n_head and conv_dim = d_inner + 2 n_group d_state. Every
// reshape keeps the elements in their order, so only the recorded shape changes. The weight matrices
// (token_embd, ssm_in, ssm_out, output) take --outtype; the others stay F32, as llama.cpp keeps them.
// Beyond llama.cpp's converter: use_bias's in/out projection biases are kept as blk.N.ssm_in.bias and
// blk.N.ssm_out.bias (llama.cpp's mamba2 loader does not read them), time_step_limit goes to Dendro's
// keys, and d_inner need not be 2 * d_model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "hf_config.h"

namespace dendro {

inline constexpr const char* kHfMamba2EmbeddingName = "backbone.embeddings.weight";
inline constexpr const char* kHfLmHeadName = "lm_head.weight";

// One GGUF tensor made from one checkpoint tensor.
struct HfTensorMapping {
    std::string gguf_name;
    std::string hf_name;
    std::vector<int64_t> hf_shape;  // as the checkpoint must store it (PyTorch order)
    std::vector<int64_t> ne;        // the GGUF shape (ggml order), the same elements in the same order
    bool matrix = false;            // a weight matrix: stored in the --outtype type; else F32
    bool negative_exp = false;      // stored as -exp(value)
    // The config.json flag that says whether the tensor exists (nullptr: it always does) and its value.
    const char* flag = nullptr;
    bool flag_value = true;
};

// Every tensor of the model but the output matrix (whose tying the converter decides), in file order.
std::vector<HfTensorMapping> hf_mamba2_tensor_mappings(const HfMamba2Config& config);

// The mamba2.* hyper-parameter keys of the mixer (conv kernel, inner size, state size, head count as
// time_step_rank, group count, norm epsilon) and, when time_step_limit is not (0, +infinity), Dendro's
// time-step keys.
void set_hf_mamba2_metadata(const HfMamba2Config& config, GgufWriter& writer);

}  // namespace dendro
