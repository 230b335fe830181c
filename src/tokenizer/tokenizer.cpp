#include "tokenizer/tokenizer.h"

#include "common/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/vocab.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro {

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
    const std::optional<std::string> model = file.get_string_opt(vocab_key::kModel);
    if (!model) fail(file.path(), ": the file has no vocabulary (", vocab_key::kModel, " is missing)");
    if (*model != kBpeModelName && *model != kSpmModelName) {
        fail(file.path(), ": ", vocab_key::kModel, " is '", *model, "'; Dendro supports '", kBpeModelName,
             "' (byte-level BPE) and '", kSpmModelName, "' (SentencePiece)");
    }
    Vocabulary vocab = read_vocabulary(file);
    if (*model == kBpeModelName) return std::make_unique<BpeTokenizer>(file, std::move(vocab));
    return std::make_unique<SpmTokenizer>(file, std::move(vocab));
}

std::string Tokenizer::token_bytes(int32_t id) const {
    check_token_id(vocab_, id, "token_bytes");
    return decoded_[static_cast<size_t>(id)];
}

const std::string& Tokenizer::token_text(int32_t id) const {
    check_token_id(vocab_, id, "token_text");
    return vocab_.tokens[static_cast<size_t>(id)];
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, std::span<const int32_t> context)
    : tokenizer_(tokenizer), leading_ids_(context.begin(), context.end()) {
    // Once the context has text, nothing later is at the start of the text: each id adds its bytes.
    text_started_ = !tokenizer_.decode(leading_ids_).empty();
    if (text_started_) leading_ids_.clear();
}

std::string StreamDecoder::push(int32_t id) {
    if (!text_started_) {
        leading_ids_.push_back(id);
        const std::string text = tokenizer_.decode(leading_ids_);  // the context's part decodes to nothing
        if (text.empty()) return {};
        text_started_ = true;
        leading_ids_.clear();
        held_ += text;
    } else {
        held_ += tokenizer_.token_bytes(id);
    }
    const size_t ready = held_.size() - utf8::incomplete_tail_length(held_);
    std::string out = utf8::replace_invalid(std::string_view(held_).substr(0, ready));
    held_.erase(0, ready);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out = utf8::replace_invalid(held_);
    held_.clear();
    return out;
}

}  // namespace dendro
