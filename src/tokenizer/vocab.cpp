#include "tokenizer/vocab.h"

#include <algorithm>

#include "common/error.h"

namespace dendro {

namespace {

constexpr int64_t kFirstTokenType = static_cast<int64_t>(TokenType::Undefined);
constexpr int64_t kLastTokenType = static_cast<int64_t>(TokenType::Byte);

int32_t read_special_id(const GgufFile& file, const char* key, size_t n_tokens) {
    const std::optional<uint64_t> id = file.get_uint_opt(key);
    if (!id) return -1;
    if (*id >= n_tokens) {
        fail(file.path(), ": ", key, " = ", *id, " is out of range for a vocabulary of ", n_tokens, " tokens");
    }
    return static_cast<int32_t>(*id);
}

bool is_matched_in_text(TokenType type) {
    return type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown;
}

}  // namespace

Vocabulary read_vocabulary(const GgufFile& file) {
    Vocabulary vocab;
    vocab.source = file.path();
    if (!file.find(vocab_key::kTokens)) fail(file.path(), ": the vocabulary key ", vocab_key::kTokens, " is missing");
    vocab.tokens = file.get_string_array(vocab_key::kTokens);
    const size_t n_tokens = vocab.tokens.size();
    if (n_tokens == 0) fail(file.path(), ": ", vocab_key::kTokens, " is empty");
    if (n_tokens > static_cast<size_t>(INT32_MAX)) fail(file.path(), ": ", vocab_key::kTokens, " is too long");

    if (file.find(vocab_key::kTokenType)) {
        const std::vector<int64_t> types = file.get_int_array(vocab_key::kTokenType);
        if (types.size() != n_tokens) {
            fail(file.path(), ": ", vocab_key::kTokenType, " has ", types.size(), " entries but ", vocab_key::kTokens,
                 " has ", n_tokens);
        }
        vocab.types.reserve(n_tokens);
        for (size_t i = 0; i < n_tokens; ++i) {
            if (types[i] < kFirstTokenType || types[i] > kLastTokenType) {
                fail(file.path(), ": ", vocab_key::kTokenType, "[", i, "] = ", types[i], " is not a token type");
            }
            vocab.types.push_back(static_cast<TokenType>(types[i]));
        }
    } else {
        vocab.types.assign(n_tokens, TokenType::Normal);
    }

    vocab.bos = read_special_id(file, vocab_key::kBosId, n_tokens);
    vocab.eos = read_special_id(file, vocab_key::kEosId, n_tokens);
    vocab.unknown = read_special_id(file, vocab_key::kUnknownId, n_tokens);
    vocab.padding = read_special_id(file, vocab_key::kPaddingId, n_tokens);
    vocab.add_bos = file.get_bool_opt(vocab_key::kAddBos);
    return vocab;
}

void check_token_id(const Vocabulary& vocab, int32_t id, std::string_view what) {
    if (id < 0 || id >= vocab.size()) {
        fail(what, ": token id ", id, " is out of range for a vocabulary of ", vocab.size(), " tokens");
    }
}

SpecialTokenMatcher::SpecialTokenMatcher(const Vocabulary& vocab) : trie_(1) {
    for (int32_t id = 0; id < vocab.size(); ++id) {
        const std::string& text = vocab.tokens[static_cast<size_t>(id)];
        if (!is_matched_in_text(vocab.types[static_cast<size_t>(id)]) || text.empty()) continue;
        int32_t node = 0;
        for (const char c : text) {
            const auto byte = static_cast<unsigned char>(c);
            int32_t next = child(node, byte);
            if (next < 0) {
                next = static_cast<int32_t>(trie_.size());
                auto& children = trie_[static_cast<size_t>(node)].children;
                const auto at = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{0}));
                children.insert(at, {byte, next});
                trie_.emplace_back();
            }
            node = next;
        }
        // A text shared by several tokens keeps the first (lowest) id, as a lookup by text would.
        if (trie_[static_cast<size_t>(node)].token < 0) trie_[static_cast<size_t>(node)].token = id;
        starts_[static_cast<unsigned char>(text[0])] = true;
    }
}

int32_t SpecialTokenMatcher::child(int32_t node, unsigned char byte) const {
    const auto& children = trie_[static_cast<size_t>(node)].children;
    const auto at = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{0}));
    return (at != children.end() && at->first == byte) ? at->second : -1;
}

std::pair<size_t, int32_t> SpecialTokenMatcher::longest_match(std::string_view text, size_t pos) const {
    std::pair<size_t, int32_t> best{0, -1};
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
        node = child(node, static_cast<unsigned char>(text[i]));
        if (node < 0) break;
        if (const int32_t token = trie_[static_cast<size_t>(node)].token; token >= 0) best = {i + 1 - pos, token};
    }
    return best;
}

std::vector<SpecialTokenMatcher::Piece> SpecialTokenMatcher::split(std::string_view text) const {
    std::vector<Piece> pieces;
    size_t plain_start = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        if (!starts_[static_cast<unsigned char>(text[pos])]) {
            ++pos;
            continue;
        }
        const auto [length, token] = longest_match(text, pos);
        if (token < 0) {
            ++pos;
            continue;
        }
        if (pos > plain_start) pieces.push_back({text.substr(plain_start, pos - plain_start), -1});
        pieces.push_back({text.substr(pos, length), token});
        pos += length;
        plain_start = pos;
    }
    if (plain_start < text.size()) pieces.push_back({text.substr(plain_start), -1});
    return pieces;
}

}  // namespace dendro
