// Vocabulary-only GGUF files for tokenizer tests: made from the tokenizer files under tests/data/tokenizers
// by the converter's add_hf_tokenizer, plus readers for the parity fixtures in tests/data/tokenizer_fixtures.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

namespace dendro::test {

inline constexpr const char* kNeoxTokenizer = "gpt-neox-20b";
inline constexpr const char* kMistralTokenizer = "mistral-v3";
// The GPT-NeoX tokenizer.json has 50,281 tokens; a model pads its embedding to a multiple of 8.
inline constexpr int64_t kNeoxPaddedVocab = 50288;
inline constexpr int64_t kMistralVocab = 32768;

std::string tokenizer_dir(const std::string& name);         // tests/data/tokenizers/<name>
std::string fixture_path(const std::string& relative);      // tests/data/tokenizer_fixtures/<relative>
std::string test_data_path(const std::string& relative);    // tests/data/<relative>

// Writes `path`: the vocabulary add_hf_tokenizer makes from `dir`, then whatever `edit` changes.
void write_vocab_gguf(const std::string& path, const std::string& dir, int64_t n_vocab_padded,
                      const std::function<void(GgufWriter&)>& edit = {});

// Copies the key/values of a vocabulary-only GGUF to `to`, leaving out `key`.
void copy_vocab_gguf_without(const std::string& from, const std::string& to, const std::string& key);

// A tokenizer together with the file it reads from (GgufFile owns the mapping the vocabulary came from).
struct LoadedTokenizer {
    std::unique_ptr<GgufFile> file;
    std::unique_ptr<Tokenizer> tokenizer;
};
LoadedTokenizer load_tokenizer(const std::string& gguf_path);

std::string read_text(const std::string& path);
// A fixture .ids file: little-endian uint16 per token.
std::vector<int32_t> read_fixture_ids(const std::string& path);

// Feeds `ids` to a StreamDecoder one by one and checks (gtest) that every piece it returns is whole UTF-8 and
// that the pieces add up to decode(ids); with `expect_held`, that some token ended inside a character.
void expect_streams_like_decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool expect_held);

}  // namespace dendro::test
