// Vocabularies made in code for random-weight models (random_model.h), so that such a file needs no tokenizer
// files: byte-level BPE ("gpt2") keys that Dendro's tokenizer and llama.cpp's vocabulary loader both accept.
#pragma once

#include <cstdint>

#include "format/gguf.h"

namespace dendro {

inline constexpr int64_t kByteTokenCount = 256;

// The 256 byte tokens (id = byte), padding tokens up to n_vocab (>= 256), no merges, the last token
// "<|endoftext|>" as end of text when there is room: every byte is a token of its own.
void add_byte_vocab(GgufWriter& writer, int64_t n_vocab);

// A GPT-NeoX-style vocabulary of exactly n_vocab tokens (>= kSyntheticBpeMinVocab): "<|endoftext|>" (id 0,
// BOS and EOS, as in GPT-NeoX), the 256 byte tokens, then generated merges filling the rest. The merges
// spell lowercase words with and without a leading space, shortest first ("Ġa", ..., "ab", ..., "Ġab", ...),
// each word merging its prefix with its last letter; tokenizer.ggml.pre is "gpt-2" (the GPT-2 split, no
// normalization), which both engines run alike.
inline constexpr int64_t kSyntheticBpeMinVocab = 1 + kByteTokenCount;
void add_synthetic_bpe_vocab(GgufWriter& writer, int64_t n_vocab);

}  // namespace dendro
