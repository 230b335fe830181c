// Byte-level BPE (tokenizer.ggml.model "gpt2"), as HF tokenizers runs GPT-2 / GPT-NeoX style tokenizers:
//   1. special tokens (CONTROL, USER_DEFINED, UNKNOWN) written in the text are cut out first, longest match;
//   2. the rest is NFC-normalized when the pre-tokenizer type says the source tokenizer does so ("mpt" or
//      "olmo", the GPT-NeoX tokenizer), then split with the pattern the type names (GPT-2's, or the cl100k one
//      for "dbrx"; PCRE2, Unicode properties);
//   3. each piece's bytes become byte symbols, merged pairwise by merge rank (lowest first, leftmost on ties).
// Bytes that are not well-formed UTF-8 cannot reach the regex: each such byte becomes its own byte token and
// the well-formed text on either side is tokenized as if the bad bytes were a boundary. A byte the vocabulary
// has no token for (GPT-NeoX lacks 0xC0, 0xC1 and 0xF5-0xFF, which UTF-8 never uses) becomes the unknown
// token, or is dropped when there is none, as HF's BPE drops it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace dendro {

class SplitRegex;

// The vocabulary entry of byte-level BPE that stands for one byte (GPT-2's reversible byte -> character map),
// UTF-8 encoded: for writers of byte-level vocabularies.
std::string gpt2_byte_token_text(uint8_t byte);

class BpeTokenizer final : public Tokenizer {
public:
    // `vocab` was read from `file`; the merges and the pre-tokenizer type are read here.
    BpeTokenizer(const GgufFile& file, Vocabulary vocab);
    ~BpeTokenizer() override;

    std::string model_name() const override;
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
    std::string decode(std::span<const int32_t> ids) const override;

private:
    struct Merge {
        uint32_t rank;
        int32_t result;
    };
    using WordCache = std::unordered_map<std::string, std::vector<int32_t>>;

    void read_merges(const GgufFile& file, const std::unordered_map<std::string, int32_t>& ids_by_text);
    void encode_text(std::string_view text, WordCache& cache, std::vector<int32_t>& out) const;
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;
    const Merge* find_merge(int32_t left, int32_t right) const;

    bool normalize_nfc_ = false;
    std::unique_ptr<SplitRegex> regex_;
    SpecialTokenMatcher specials_;
    std::array<int32_t, 256> byte_token_{};      // the token of each single byte, -1 when it has none
    std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
};

}  // namespace dendro
