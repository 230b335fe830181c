#include "synthetic_vocab.h"

#include <string>
#include <vector>

#include "common/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/vocab.h"

namespace dendro {
namespace {

constexpr const char* kEndOfText = "<|endoftext|>";
constexpr const char* kGpt2PreTokenizer = "gpt-2";
constexpr char kFirstLetter = 'a', kLastLetter = 'z';

struct TokenList {
    std::vector<std::string> texts;
    std::vector<int32_t> types;
    void add(std::string text, TokenType type) {
        texts.push_back(std::move(text));
        types.push_back(static_cast<int32_t>(type));
    }
};

void add_byte_tokens(TokenList& tokens) {
    for (int b = 0; b < kByteTokenCount; ++b) {
        tokens.add(gpt2_byte_token_text(static_cast<uint8_t>(b)), TokenType::Normal);
    }
}

void write_bpe_keys(GgufWriter& writer, TokenList tokens, std::vector<std::string> merges) {
    writer.set(vocab_key::kModel, GgufValue::string(std::string(kBpeModelName)));
    writer.set(vocab_key::kPre, GgufValue::string(kGpt2PreTokenizer));
    writer.set(vocab_key::kTokens, GgufValue::string_array(std::move(tokens.texts)));
    writer.set(vocab_key::kTokenType, GgufValue::i32_array(tokens.types));
    writer.set(vocab_key::kMerges, GgufValue::string_array(std::move(merges)));
}

// Appends merged tokens, shortest words first, until `tokens` holds n_vocab: each word of the previous length
// (starting from the space and the letters themselves) is extended by each letter.
std::vector<std::string> add_word_merges(TokenList& tokens, int64_t n_vocab) {
    std::vector<std::string> merges;
    std::vector<std::string> words = {gpt2_byte_token_text(' ')};
    for (char c = kFirstLetter; c <= kLastLetter; ++c) words.push_back(std::string(1, c));
    while (static_cast<int64_t>(tokens.texts.size()) < n_vocab) {
        std::vector<std::string> longer;
        for (const std::string& word : words) {
            for (char c = kFirstLetter; c <= kLastLetter; ++c) {
                if (static_cast<int64_t>(tokens.texts.size()) == n_vocab) return merges;
                merges.push_back(concat(word, " ", c));
                tokens.add(word + c, TokenType::Normal);
                longer.push_back(word + c);
            }
        }
        words = std::move(longer);
    }
    return merges;
}

}  // namespace

void add_byte_vocab(GgufWriter& writer, int64_t n_vocab) {
    if (n_vocab < kByteTokenCount) fail("a byte vocabulary needs n_vocab >= ", kByteTokenCount, ", got ", n_vocab);
    TokenList tokens;
    add_byte_tokens(tokens);
    for (int64_t id = kByteTokenCount; id < n_vocab; ++id) {
        const bool eos = id == n_vocab - 1;
        tokens.add(eos ? std::string(kEndOfText) : concat("<|pad", id, "|>"),
                   eos ? TokenType::Control : TokenType::Unused);
    }
    write_bpe_keys(writer, std::move(tokens), {});
    if (n_vocab > kByteTokenCount) writer.set(vocab_key::kEosId, GgufValue::u32(static_cast<uint32_t>(n_vocab - 1)));
}

void add_synthetic_bpe_vocab(GgufWriter& writer, int64_t n_vocab) {
    if (n_vocab < kSyntheticBpeMinVocab) {
        fail("a synthetic BPE vocabulary needs n_vocab >= ", kSyntheticBpeMinVocab, ", got ", n_vocab);
    }
    constexpr uint32_t kEndOfTextId = 0;
    TokenList tokens;
    tokens.add(kEndOfText, TokenType::Control);
    add_byte_tokens(tokens);
    std::vector<std::string> merges = add_word_merges(tokens, n_vocab);
    write_bpe_keys(writer, std::move(tokens), std::move(merges));
    writer.set(vocab_key::kBosId, GgufValue::u32(kEndOfTextId));
    writer.set(vocab_key::kEosId, GgufValue::u32(kEndOfTextId));
}

}  // namespace dendro
