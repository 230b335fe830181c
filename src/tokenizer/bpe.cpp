#include "tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <queue>

#include "common/error.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro {

namespace {

// The GPT-2 pre-tokenizer split (contractions, letters, numbers, other symbols, each with one optional leading
// space; whitespace runs leave their last space to the next word).
constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// The cl100k-style split (DBRX, Granite 4.0): contractions in any case, letters with one optional leading
// non-letter, non-digit, non-newline character, numbers in groups of up to three digits, symbols with trailing
// newlines, newline runs with their leading whitespace, then whitespace as in GPT-2.
constexpr const char* kCl100kSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
    R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";

// tokenizer.ggml.pre values this tokenizer implements: each names a split pattern (the one llama.cpp gives that
// name) and whether the source tokenizer NFC-normalizes first (llama.cpp itself never does).
// "gpt-2", "mpt", "olmo": the GPT-2 split. "mpt" and "olmo" are both the GPT-NeoX-20B tokenizer, whose
// tokenizer.json asks for NFC: llama.cpp's converter finds GPT-NeoX-20B, MPT and OLMo by one hash and, the later
// of its two matches winning, writes "olmo" for all three (Mamba-1 and Mamba-2 checkpoints with a
// tokenizer.json among them); for checkpoints without tokenizer files it copies its built-in GPT-NeoX
// vocabulary, named "mpt" by default.
// "dbrx": the cl100k split, merges applied as usual (llama.cpp names the Granite 4.0 tokenizer so). Names
// whose llama.cpp rule Dendro does not implement (the Llama-3 group, which looks whole words up before merging;
// "falcon", a sequence of splits; ...) are refused.
struct PreTokenizerRule {
    std::string_view name;
    const char* split_pattern;
    bool nfc;
};
constexpr PreTokenizerRule kPreTokenizerRules[] = {
    {"gpt-2", kGpt2SplitPattern, false},
    {"mpt", kGpt2SplitPattern, true},
    {"olmo", kGpt2SplitPattern, true},
    {"dbrx", kCl100kSplitPattern, false},
};

std::string known_pre_tokenizer_names() {
    std::string names;
    for (const PreTokenizerRule& rule : kPreTokenizerRules) {
        names += concat(names.empty() ? "" : ", ", "'", rule.name, "'");
    }
    return names;
}

// GPT-2's reversible byte -> character map: printable Latin-1 bytes stand for themselves, the other bytes
// (controls, space, DEL, NBSP, soft hyphen) take the code points from 256 upwards, in byte order.
constexpr char32_t kFirstRemappedCodepoint = 256;
bool byte_stands_for_itself(int byte) {
    return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}
std::array<char32_t, 256> byte_to_codepoint_table() {
    std::array<char32_t, 256> table{};
    char32_t next = kFirstRemappedCodepoint;
    for (int byte = 0; byte < 256; ++byte) table[byte] = byte_stands_for_itself(byte) ? char32_t(byte) : next++;
    return table;
}

uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

bool is_byte_level_token(TokenType type) { return type == TokenType::Normal || type == TokenType::Undefined; }

}  // namespace

std::string gpt2_byte_token_text(uint8_t byte) { return utf8::encode_codepoint(byte_to_codepoint_table()[byte]); }

// The compiled split pattern (JIT when the platform has it). Matching needs per-call match data, so one
// compiled pattern serves concurrent encodes.
class SplitRegex {
public:
    explicit SplitRegex(const char* pattern) {
        int error = 0;
        PCRE2_SIZE error_offset = 0;
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
        if (!code_) fail("cannot compile the pre-tokenizer pattern: PCRE2 error ", error, " at ", error_offset);
        pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // optional speed-up: the interpreter runs without it
    }
    ~SplitRegex() { pcre2_code_free(code_); }
    SplitRegex(const SplitRegex&) = delete;
    SplitRegex& operator=(const SplitRegex&) = delete;

    // Calls on_piece for consecutive pieces covering all of `text` (well-formed UTF-8): the matches, and any
    // text between them as a piece of its own.
    template <typename OnPiece>
    void split(std::string_view text, OnPiece&& on_piece) const {
        const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
            pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
        if (!match) throw std::bad_alloc();
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        size_t pos = 0;
        while (pos < text.size()) {
            const int rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) fail("pre-tokenizer pattern match failed: PCRE2 error ", rc);
            const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
            const size_t begin = ovector[0], end = ovector[1];
            if (begin > pos) on_piece(text.substr(pos, begin - pos));
            if (end == begin) {  // the pattern has no empty alternative; guard against looping anyway
                size_t next = begin;
                char32_t ignored = 0;
                if (!utf8::next_codepoint(text, next, ignored)) next = begin + 1;
                on_piece(text.substr(begin, next - begin));
                pos = next;
                continue;
            }
            on_piece(text.substr(begin, end - begin));
            pos = end;
        }
        if (pos < text.size()) on_piece(text.substr(pos));
    }

private:
    pcre2_code* code_ = nullptr;
};

BpeTokenizer::BpeTokenizer(const GgufFile& file, Vocabulary vocab)
    : Tokenizer(std::move(vocab)), specials_(vocab_) {
    const std::optional<std::string> pre = file.get_string_opt(vocab_key::kPre);
    const PreTokenizerRule* rule = nullptr;
    for (const PreTokenizerRule& candidate : kPreTokenizerRules) {
        if (pre && *pre == candidate.name) rule = &candidate;
    }
    if (!rule) {
        fail(file.path(), ": ", vocab_key::kPre, " is ", pre ? concat("'", *pre, "'") : std::string("missing"),
             "; Dendro's byte-level BPE knows ", known_pre_tokenizer_names());
    }
    normalize_nfc_ = rule->nfc;
    regex_ = std::make_unique<SplitRegex>(rule->split_pattern);

    // Byte-level tokens are stored as their bytes mapped to characters; undo the map once, here.
    const std::array<char32_t, 256> byte_to_codepoint = byte_to_codepoint_table();
    std::unordered_map<char32_t, char> codepoint_to_byte;
    for (int byte = 0; byte < 256; ++byte) codepoint_to_byte[byte_to_codepoint[byte]] = static_cast<char>(byte);

    std::unordered_map<std::string, int32_t> ids_by_text;  // byte-level tokens only
    decoded_.resize(vocab_.tokens.size());
    for (int32_t id = 0; id < vocab_.size(); ++id) {
        const std::string& text = vocab_.tokens[static_cast<size_t>(id)];
        const TokenType type = vocab_.types[static_cast<size_t>(id)];
        if (type == TokenType::UserDefined) decoded_[static_cast<size_t>(id)] = text;
        if (!is_byte_level_token(type)) continue;
        std::string bytes;
        size_t pos = 0;
        char32_t codepoint = 0;
        while (pos < text.size()) {
            const auto byte = utf8::next_codepoint(text, pos, codepoint) ? codepoint_to_byte.find(codepoint)
                                                                         : codepoint_to_byte.end();
            if (byte == codepoint_to_byte.end()) {
                fail(file.path(), ": token ", id, " of ", vocab_key::kTokens,
                     " is not byte-level encoded text, as a 'gpt2' vocabulary needs");
            }
            bytes += byte->second;
        }
        decoded_[static_cast<size_t>(id)] = std::move(bytes);
        ids_by_text.emplace(text, id);
    }
    // GPT-NeoX's vocabulary has no tokens for the bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5-0xFF).
    for (int byte = 0; byte < 256; ++byte) {
        const auto found = ids_by_text.find(utf8::encode_codepoint(byte_to_codepoint[byte]));
        byte_token_[byte] = found == ids_by_text.end() ? vocab_.unknown : found->second;
    }
    read_merges(file, ids_by_text);

    bos_ = vocab_.bos;
    eos_ = vocab_.eos;
    add_bos_ = vocab_.add_bos.value_or(false) && bos_ >= 0;
}

BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::read_merges(const GgufFile& file, const std::unordered_map<std::string, int32_t>& ids_by_text) {
    if (!file.find(vocab_key::kMerges)) fail(file.path(), ": the vocabulary key ", vocab_key::kMerges, " is missing");
    const std::vector<std::string>& merges = file.get_string_array(vocab_key::kMerges);
    merges_.reserve(merges.size());
    const auto lookup = [&](const std::string& text, size_t index, const std::string& merge) {
        const auto found = ids_by_text.find(text);
        if (found == ids_by_text.end()) {
            fail(file.path(), ": ", vocab_key::kMerges, "[", index, "] = '", merge, "' refers to '", text,
                 "', which is not a token of the vocabulary");
        }
        return found->second;
    };
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string& merge = merges[i];
        const size_t space = merge.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 == merge.size() ||
            merge.find(' ', space + 1) != std::string::npos) {
            fail(file.path(), ": ", vocab_key::kMerges, "[", i, "] = '", merge, "' is not two tokens and a space");
        }
        const std::string left = merge.substr(0, space), right = merge.substr(space + 1);
        const int32_t left_id = lookup(left, i, merge);
        const int32_t right_id = lookup(right, i, merge);
        const int32_t result = lookup(left + right, i, merge);
        merges_.emplace(pair_key(left_id, right_id), Merge{static_cast<uint32_t>(i), result});  // first rank wins
    }
}

std::string BpeTokenizer::model_name() const { return std::string(kBpeModelName); }

const BpeTokenizer::Merge* BpeTokenizer::find_merge(int32_t left, int32_t right) const {
    const auto found = merges_.find(pair_key(left, right));
    return found == merges_.end() ? nullptr : &found->second;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    struct Symbol {
        int32_t id;
        int32_t prev, next;  // neighbours in the current segmentation, -1 at the ends
    };
    struct Candidate {
        uint32_t rank;
        int32_t left;               // index of the left symbol
        int32_t left_id, right_id;  // what the pair was when queued; stale entries are skipped
        bool operator>(const Candidate& other) const {
            return rank != other.rank ? rank > other.rank : left > other.left;
        }
    };
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    for (const char c : word) {
        const int32_t id = byte_token_[static_cast<unsigned char>(c)];
        if (id < 0) continue;  // a byte without a token (and no unknown token): dropped, as HF's BPE does
        const auto index = static_cast<int32_t>(symbols.size());
        symbols.push_back({id, index - 1, index + 1});
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    const auto push_pair = [&](int32_t left) {
        if (left < 0) return;
        const int32_t right = symbols[static_cast<size_t>(left)].next;
        if (right < 0) return;
        const int32_t left_id = symbols[static_cast<size_t>(left)].id;
        const int32_t right_id = symbols[static_cast<size_t>(right)].id;
        if (const Merge* merge = find_merge(left_id, right_id)) queue.push({merge->rank, left, left_id, right_id});
    };
    for (size_t i = 0; i + 1 < symbols.size(); ++i) push_pair(static_cast<int32_t>(i));

    while (!queue.empty()) {
        const Candidate candidate = queue.top();
        queue.pop();
        Symbol& left = symbols[static_cast<size_t>(candidate.left)];
        if (left.id != candidate.left_id || left.next < 0) continue;  // merged away or changed since queued
        Symbol& right = symbols[static_cast<size_t>(left.next)];
        if (right.id != candidate.right_id) continue;
        left.id = find_merge(candidate.left_id, candidate.right_id)->result;
        right.id = -1;  // marks the symbol dead
        left.next = right.next;
        if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = candidate.left;
        push_pair(left.prev);
        push_pair(candidate.left);
    }
    for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
        out.push_back(symbols[static_cast<size_t>(i)].id);
    }
}

void BpeTokenizer::encode_text(std::string_view text, WordCache& cache, std::vector<int32_t>& out) const {
    const auto encode_piece = [&](std::string_view piece) {
        auto [entry, inserted] = cache.try_emplace(std::string(piece));
        if (inserted) encode_word(piece, entry->second);
        out.insert(out.end(), entry->second.begin(), entry->second.end());
    };
    const auto encode_well_formed = [&](std::string_view run) {
        if (run.empty()) return;
        if (normalize_nfc_) {
            const std::string normalized = utf8::nfc(run);
            regex_->split(normalized, encode_piece);
        } else {
            regex_->split(run, encode_piece);
        }
    };
    size_t run_start = 0, pos = 0;
    while (pos < text.size()) {
        const utf8::SequenceScan scan = utf8::scan_sequence(text, pos);
        if (scan.complete()) {
            pos += scan.expected;
            continue;
        }
        encode_well_formed(text.substr(run_start, pos - run_start));
        if (const int32_t id = byte_token_[static_cast<unsigned char>(text[pos])]; id >= 0) out.push_back(id);
        run_start = ++pos;
    }
    encode_well_formed(text.substr(run_start));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos) const {
    std::vector<int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    WordCache cache;
    for (const SpecialTokenMatcher::Piece& piece : specials_.split(text)) {
        if (piece.token >= 0) {
            out.push_back(piece.token);
        } else {
            encode_text(piece.text, cache, out);
        }
    }
    return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (const int32_t id : ids) {
        check_token_id(vocab_, id, "decode");
        out += decoded_[static_cast<size_t>(id)];
    }
    return out;
}

}  // namespace dendro
