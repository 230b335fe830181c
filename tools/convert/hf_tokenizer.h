// Hugging Face tokenizer files -> the GGUF vocabulary keys llama.cpp defines (tokenizer.ggml.*), so that
// dendro::Tokenizer::from_gguf (and llama.cpp) can rebuild the tokenizer from the converted file.
//
// The directory must hold one of:
//   tokenizer.json   (a byte-level BPE tokenizer such as GPT-NeoX's)      -> tokenizer.ggml.model "gpt2"
//   tokenizer.model  (a SentencePiece ModelProto such as Mistral's/Llama's) -> tokenizer.ggml.model "llama",
//                    plus the proto bytes themselves under kSpmModelKey
// tokenizer.json wins when both are present. Special token ids and add_bos/add_eos come from
// tokenizer_config.json, config.json and generation_config.json in the same directory when present.
#pragma once

#include <cstdint>
#include <string>

#include "gguf.h"

namespace dendro {

// Writes the vocabulary of the tokenizer in `tokenizer_dir` into `writer`, padded with "[PAD<i>]" tokens of
// type UNUSED up to `n_vocab_padded` entries (the model's embedding rows). Throws dendro::Error naming the
// file when the tokenizer files are missing or corrupt, or when the tokenizer has more tokens than
// `n_vocab_padded`.
void add_hf_tokenizer(const std::string& tokenizer_dir, int64_t n_vocab_padded, GgufWriter& writer);

}  // namespace dendro
