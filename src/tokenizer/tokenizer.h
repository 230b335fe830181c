// Tokenizers built from the vocabulary a GGUF file carries, as llama.cpp stores it:
//   tokenizer.ggml.model "gpt2"  -> byte-level BPE (GPT-2 pre-tokenizer regex, byte<->unicode map, merges)
//   tokenizer.ggml.model "llama" -> SentencePiece through the sentencepiece library (the original proto from
//                                   dendro.tokenizer.spm_model when present, else rebuilt from tokens/scores/types)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "format/gguf.h"

namespace dendro {

// Token types as llama.cpp stores them in tokenizer.ggml.token_type.
enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

// Key under which Dendro stores the serialized SentencePiece ModelProto (a UINT8 array).
inline constexpr const char* kSpmModelKey = "dendro.tokenizer.spm_model";

// The token list of a GGUF vocabulary with its types and special ids (read by read_vocabulary, tokenizer_vocab.h).
struct Vocabulary {
    std::string source;  // the file, for error messages
    std::vector<std::string> tokens;
    std::vector<TokenType> types;
    int32_t bos = -1, eos = -1, unknown = -1, padding = -1;
    std::optional<bool> add_bos;  // absent when the file does not say

    int32_t size() const { return static_cast<int32_t>(tokens.size()); }
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Throws dendro::Error naming the file and key when the vocabulary is missing or inconsistent.
    static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);

    virtual std::string model_name() const = 0;  // "gpt2" or "llama"
    int32_t n_vocab() const { return vocab_.size(); }
    // Encodes text; special/added tokens written literally in the text are matched before splitting.
    // add_bos prepends BOS when the vocabulary has one.
    virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
    // The bytes a token stands for, as they appear inside a decoded text (control tokens give "").
    std::string token_bytes(int32_t id) const;
    // Decodes a whole sequence (for SentencePiece, drops the leading space of the dummy prefix).
    virtual std::string decode(std::span<const int32_t> ids) const = 0;
    const std::string& token_text(int32_t id) const;  // the vocabulary entry as stored

    int32_t bos() const { return bos_; }  // -1 when none
    int32_t eos() const { return eos_; }
    bool add_bos_default() const { return add_bos_; }
    bool is_end_of_generation(int32_t id) const { return id >= 0 && id == eos_; }

protected:
    explicit Tokenizer(Vocabulary vocab) : vocab_(std::move(vocab)) {}

    Vocabulary vocab_;
    std::vector<std::string> decoded_;  // token_bytes of every token, filled by the subclass's constructor
    int32_t bos_ = -1, eos_ = -1;
    bool add_bos_ = false;
};

// Turns a stream of token ids into printable text without ever emitting half a UTF-8 character: bytes of
// an incomplete sequence are held until the next token completes them (or flush() at the end); bytes that
// can no longer become a character come out as U+FFFD. The ids follow `context` (the prompt, already shown
// by the caller): the pieces add up to decode(context + ids) minus decode(context), with ill-formed bytes
// replaced. So SentencePiece's start-of-text rule (the dummy-prefix space dropped) applies only when the
// context decodes to nothing, as it does in a decode of the whole sequence.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, std::span<const int32_t> context = {});
    std::string push(int32_t id);  // text ready to print now (possibly empty)
    std::string flush();           // whatever is held, invalid bytes replaced by U+FFFD

private:
    const Tokenizer& tokenizer_;
    // Until the sequence's text starts, the ids so far (context included) are decoded together (decode()
    // treats the start of a text specially); after that each token adds its token_bytes.
    std::vector<int32_t> leading_ids_;
    bool text_started_ = false;
    std::string held_;  // the start of a character whose remaining bytes have not arrived yet
};

}  // namespace dendro
