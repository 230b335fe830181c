// The fields of a SentencePiece ModelProto (sentencepiece_model.proto) that a vocabulary needs, read from and
// written to the protobuf wire format directly: the sentencepiece library installs no generated proto
// classes, and this is all Dendro touches. Unknown fields are skipped on reading.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dendro {

// ModelProto.SentencePiece.Type; the numbers match dendro::TokenType.
enum class SpmPieceType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// TrainerSpec.ModelType.
enum class SpmModelType : int32_t { Unigram = 1, Bpe = 2, Word = 3, Char = 4 };

struct SpmPiece {
    std::string piece;
    float score = 0.0f;
    SpmPieceType type = SpmPieceType::Normal;
};

struct SpmModel {
    std::vector<SpmPiece> pieces;
    // TrainerSpec (defaults as the .proto declares them)
    SpmModelType model_type = SpmModelType::Unigram;
    bool byte_fallback = false;
    int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
    // NormalizerSpec
    std::string normalizer_name;
    std::string precompiled_charsmap;
    bool add_dummy_prefix = true;
    bool remove_extra_whitespaces = true;
    bool escape_whitespaces = true;
};

// Throws dendro::Error naming `source` when the bytes are not a well-formed ModelProto.
SpmModel parse_spm_model(std::string_view serialized, std::string_view source);
std::string serialize_spm_model(const SpmModel& model);

}  // namespace dendro
