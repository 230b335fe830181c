#include "tokenizer/spm.h"

#include <sentencepiece_processor.h>

#include "common/error.h"
#include "tokenizer/spm_model_proto.h"

namespace dendro {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";      // U+2581, SentencePiece's visible space
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // " ⁇ ", SentencePiece's default text for <unk>
constexpr std::string_view kIdentityNormalizer = "identity";

// llama.cpp's special ids for a "llama" vocabulary whose file does not name them.
constexpr int32_t kDefaultBosId = 1;
constexpr int32_t kDefaultEosId = 2;

std::string replace_space_symbols(std::string_view piece) {
    std::string out;
    out.reserve(piece.size());
    size_t pos = 0;
    while (pos < piece.size()) {
        if (piece.substr(pos, kSpaceSymbol.size()) == kSpaceSymbol) {
            out += ' ';
            pos += kSpaceSymbol.size();
        } else {
            out += piece[pos++];
        }
    }
    return out;
}

// "<0xNN>" -> the byte NN.
std::optional<char> byte_piece_value(std::string_view piece) {
    constexpr std::string_view kPrefix = "<0x", kSuffix = ">";
    constexpr size_t kHexDigits = 2, kHexBase = 16;
    if (piece.size() != kPrefix.size() + kHexDigits + kSuffix.size() || !piece.starts_with(kPrefix) ||
        !piece.ends_with(kSuffix)) {
        return std::nullopt;
    }
    unsigned value = 0;
    for (const char c : piece.substr(kPrefix.size(), kHexDigits)) {
        unsigned digit = 0;
        if (c >= '0' && c <= '9') {
            digit = static_cast<unsigned>(c - '0');
        } else if (c >= 'A' && c <= 'F') {
            digit = static_cast<unsigned>(c - 'A' + 10);
        } else if (c >= 'a' && c <= 'f') {
            digit = static_cast<unsigned>(c - 'a' + 10);
        } else {
            return std::nullopt;
        }
        value = value * kHexBase + digit;
    }
    return static_cast<char>(value);
}

// Token types whose text SentencePiece's decoder shows, with the dummy-prefix space strippable.
bool is_text_piece(TokenType type) {
    return type == TokenType::Normal || type == TokenType::UserDefined || type == TokenType::Undefined;
}

}  // namespace

void check_spm_model_loads(std::string_view serialized, std::string_view source) {
    sentencepiece::SentencePieceProcessor processor;
    const auto status = processor.LoadFromSerializedProto(serialized);
    if (!status.ok()) fail(source, ": sentencepiece cannot load it: ", status.ToString());
}

SpmTokenizer::SpmTokenizer(const GgufFile& file, Vocabulary vocab)
    : Tokenizer(std::move(vocab)),
      processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()),
      specials_(vocab_) {
    if (file.find(kSpmModelKey)) {
        load_stored_model(file);
    } else {
        load_rebuilt_model(file);
    }

    decoded_.resize(vocab_.tokens.size());
    for (int32_t id = 0; id < vocab_.size(); ++id) {
        const std::string& text = vocab_.tokens[static_cast<size_t>(id)];
        std::string& bytes = decoded_[static_cast<size_t>(id)];
        switch (vocab_.types[static_cast<size_t>(id)]) {
            case TokenType::Normal:
            case TokenType::Undefined:
            case TokenType::UserDefined: bytes = replace_space_symbols(text); break;
            case TokenType::Byte: {
                const std::optional<char> value = byte_piece_value(text);
                if (!value) fail(file.path(), ": byte token ", id, " is '", text, "', not of the form <0xNN>");
                bytes = std::string(1, *value);
                break;
            }
            case TokenType::Unknown: bytes = std::string(kUnknownSurface); break;
            case TokenType::Control:
            case TokenType::Unused: break;
        }
    }

    bos_ = vocab_.bos >= 0 ? vocab_.bos : (kDefaultBosId < vocab_.size() ? kDefaultBosId : -1);
    eos_ = vocab_.eos >= 0 ? vocab_.eos : (kDefaultEosId < vocab_.size() ? kDefaultEosId : -1);
    add_bos_ = vocab_.add_bos.value_or(true) && bos_ >= 0;
}

SpmTokenizer::~SpmTokenizer() = default;

void SpmTokenizer::load_stored_model(const GgufFile& file) {
    const GgufValue& value = *file.find(kSpmModelKey);
    const auto* bytes = std::get_if<std::vector<uint64_t>>(&value.data);
    if (value.type != GgufType::ARRAY || value.array_type != GgufType::UINT8 || !bytes) {
        fail(file.path(), ": ", kSpmModelKey, " must be an array of uint8 (a serialized SentencePiece model)");
    }
    std::string serialized(bytes->size(), '\0');
    for (size_t i = 0; i < bytes->size(); ++i) serialized[i] = static_cast<char>((*bytes)[i]);

    const std::string source = concat(file.path(), ": ", kSpmModelKey);
    const SpmModel model = parse_spm_model(serialized, source);
    const auto status = processor_->LoadFromSerializedProto(serialized);
    if (!status.ok()) fail(source, ": sentencepiece cannot load it: ", status.ToString());
    if (model.pieces.size() > vocab_.tokens.size()) {
        fail(source, ": the model has ", model.pieces.size(), " pieces but ", vocab_key::kTokens, " has only ",
             vocab_.tokens.size());
    }
    for (size_t id = 0; id < model.pieces.size(); ++id) {
        if (model.pieces[id].piece != vocab_.tokens[id]) {
            fail(source, ": piece ", id, " is '", model.pieces[id].piece, "' but ", vocab_key::kTokens, " has '",
                 vocab_.tokens[id], "'");
        }
    }
    strip_leading_space_ = model.add_dummy_prefix || model.remove_extra_whitespaces;
    strip_all_leading_spaces_ = model.remove_extra_whitespaces;
}

void SpmTokenizer::load_rebuilt_model(const GgufFile& file) {
    if (!file.find(vocab_key::kScores)) fail(file.path(), ": the vocabulary key ", vocab_key::kScores, " is missing");
    const std::vector<float> scores = file.get_float_array(vocab_key::kScores);
    if (scores.size() != vocab_.tokens.size()) {
        fail(file.path(), ": ", vocab_key::kScores, " has ", scores.size(), " entries but ", vocab_key::kTokens,
             " has ", vocab_.tokens.size());
    }
    SpmModel model;
    model.model_type = SpmModelType::Bpe;
    model.unk_id = vocab_.unknown;
    model.bos_id = vocab_.bos;
    model.eos_id = vocab_.eos;
    model.pad_id = vocab_.padding;
    model.pieces.reserve(vocab_.tokens.size());
    for (size_t id = 0; id < vocab_.tokens.size(); ++id) {
        const TokenType type = vocab_.types[id];
        const SpmPieceType piece_type =
            type == TokenType::Undefined ? SpmPieceType::Normal : static_cast<SpmPieceType>(type);
        model.byte_fallback = model.byte_fallback || type == TokenType::Byte;
        if (type == TokenType::Unknown && model.unk_id < 0) model.unk_id = static_cast<int32_t>(id);
        model.pieces.push_back({vocab_.tokens[id], scores[id], piece_type});
    }
    model.normalizer_name = std::string(kIdentityNormalizer);
    model.add_dummy_prefix = file.get_bool_opt(vocab_key::kAddSpacePrefix).value_or(true);
    model.remove_extra_whitespaces = file.get_bool_opt(vocab_key::kRemoveExtraWhitespaces).value_or(false);
    model.escape_whitespaces = true;

    const auto status = processor_->LoadFromSerializedProto(serialize_spm_model(model));
    if (!status.ok()) {
        fail(file.path(), ": cannot build a SentencePiece model from ", vocab_key::kTokens, "/", vocab_key::kScores,
             "/", vocab_key::kTokenType, ": ", status.ToString());
    }
    strip_leading_space_ = model.add_dummy_prefix || model.remove_extra_whitespaces;
    strip_all_leading_spaces_ = model.remove_extra_whitespaces;
}

std::string SpmTokenizer::model_name() const { return std::string(kSpmModelName); }

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos) const {
    std::vector<int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    std::vector<int> ids;
    for (const SpecialTokenMatcher::Piece& piece : specials_.split(text)) {
        if (piece.token >= 0) {
            out.push_back(piece.token);
            continue;
        }
        ids.clear();
        const auto status = processor_->Encode(piece.text, &ids);
        if (!status.ok()) fail("SentencePiece encoding failed: ", status.ToString());
        out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
}

// As SentencePiece decodes: byte tokens give their bytes; the first text piece loses the space the dummy
// prefix put before it (every leading text piece does when extra whitespace was removed on encoding).
std::string SpmTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    bool at_start = true;
    bool consumed_space = false;
    for (const int32_t id : ids) {
        check_token_id(vocab_, id, "decode");
        const TokenType type = vocab_.types[static_cast<size_t>(id)];
        std::string_view bytes = decoded_[static_cast<size_t>(id)];
        if (type == TokenType::Byte) {
            out += bytes;
            continue;
        }
        if (consumed_space || !out.empty()) at_start = false;
        consumed_space = false;
        if (at_start && strip_leading_space_ && is_text_piece(type) && bytes.starts_with(' ')) {
            bytes.remove_prefix(1);
            consumed_space = !strip_all_leading_spaces_;
        }
        out += bytes;
    }
    return out;
}

}  // namespace dendro
