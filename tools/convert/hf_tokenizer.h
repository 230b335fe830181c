// Hugging Face tokenizer files -> the GGUF vocabulary keys llama.cpp defines (tokenizer.ggml.*), so that
// dendro::Tokenizer::from_gguf (and llama.cpp) can rebuild the tokenizer from the converted file.
//
// The directory must hold one of:
//   tokenizer.json  a byte-level BPE tokenizer (GPT-2 or GPT-NeoX style)  -> tokenizer.ggml.model "gpt2",
//                   tokenizer.ggml.pre "gpt-2", or "olmo" when it NFC-normalizes (GPT-NeoX; llama.cpp's name)
//   tokenizer.model (or mistral-common's tokenizer.model.v3) a SentencePiece ModelProto
//                   -> tokenizer.ggml.model "llama", plus the proto bytes themselves under kSpmModelKey
// A tokenizer.json that is not byte-level BPE is passed over for a SentencePiece model next to it.
// Special token ids and add_bos/add_eos follow llama.cpp's converter: the TemplateProcessing post-processor
// of tokenizer.json, then tokenizer_config.json (add_*_token, *_token resolved through the added tokens),
// then config.json and generation_config.json (*_token_id) for ids still unset; a SentencePiece model's own
// ids fill what is left.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "format/gguf.h"

namespace dendro {

// Writes the vocabulary of the tokenizer in `tokenizer_dir` into `writer`, padded with "[PAD<id>]" tokens of
// type UNUSED up to `n_vocab_padded` entries (the model's embedding rows). Added tokens (tokenizer.json's
// added_tokens) whose ids lie past the embedding rows can never be produced or embedded by the model, so
// they are dropped and reported through `warn` (the GPT-NeoX-20B tokenizer.json carries four such tokens
// beyond the 50,280 rows of the state-spaces Mamba checkpoints). Throws dendro::Error naming the file when
// the tokenizer files are missing or corrupt, or when the base vocabulary has more tokens than
// `n_vocab_padded`.
void add_hf_tokenizer(const std::string& tokenizer_dir, int64_t n_vocab_padded, GgufWriter& writer,
                      const std::function<void(const std::string&)>& warn = {});

}  // namespace dendro
