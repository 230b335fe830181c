// The parts of a GGUF vocabulary every tokenizer shares: the llama.cpp key names, the reading and checking of
// the token list with its types and special ids (struct Vocabulary, tokenizer.h), and the matcher that finds
// special tokens written literally in a text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

namespace dendro {

// Key names as llama.cpp's gguf-py defines them (Keys.Tokenizer).
namespace vocab_key {
inline constexpr const char* kModel = "tokenizer.ggml.model";
inline constexpr const char* kPre = "tokenizer.ggml.pre";
inline constexpr const char* kTokens = "tokenizer.ggml.tokens";
inline constexpr const char* kTokenType = "tokenizer.ggml.token_type";
inline constexpr const char* kScores = "tokenizer.ggml.scores";
inline constexpr const char* kMerges = "tokenizer.ggml.merges";
inline constexpr const char* kBosId = "tokenizer.ggml.bos_token_id";
inline constexpr const char* kEosId = "tokenizer.ggml.eos_token_id";
inline constexpr const char* kUnknownId = "tokenizer.ggml.unknown_token_id";
inline constexpr const char* kPaddingId = "tokenizer.ggml.padding_token_id";
inline constexpr const char* kAddBos = "tokenizer.ggml.add_bos_token";
inline constexpr const char* kAddEos = "tokenizer.ggml.add_eos_token";
inline constexpr const char* kAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
inline constexpr const char* kRemoveExtraWhitespaces = "tokenizer.ggml.remove_extra_whitespaces";
}  // namespace vocab_key

// tokenizer.ggml.model values.
inline constexpr std::string_view kBpeModelName = "gpt2";
inline constexpr std::string_view kSpmModelName = "llama";

// Reads tokens, token types (NORMAL for all when the key is absent) and special ids; throws dendro::Error
// naming the file and key when one is missing, of the wrong type, of the wrong length or out of range.
Vocabulary read_vocabulary(const GgufFile& file);

// Throws unless 0 <= id < vocabulary size (naming `what`, e.g. "decode").
void check_token_id(const Vocabulary& vocab, int32_t id, std::string_view what);

// Splits a text where tokens of type CONTROL, USER_DEFINED or UNKNOWN occur literally in it, taking at each
// position the longest such token that starts there, leftmost first (as HF tokenizers' added vocabulary does).
class SpecialTokenMatcher {
public:
    explicit SpecialTokenMatcher(const Vocabulary& vocab);

    struct Piece {
        std::string_view text;  // the text between special tokens (when token < 0)
        int32_t token = -1;     // the special token found, or -1 for plain text
    };
    std::vector<Piece> split(std::string_view text) const;

private:
    struct Node {
        std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
        int32_t token = -1;                                       // token ending here, if any
    };
    int32_t child(int32_t node, unsigned char byte) const;
    // Longest special token starting at text[pos]: its length and id, or {0, -1}.
    std::pair<size_t, int32_t> longest_match(std::string_view text, size_t pos) const;

    std::vector<Node> trie_;
    bool starts_[256] = {};  // bytes that begin some special token (fast rejection)
};

}  // namespace dendro
