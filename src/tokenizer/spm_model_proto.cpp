#include "tokenizer/spm_model_proto.h"

#include <bit>
#include <cstring>

#include "common/error.h"

namespace dendro {

namespace {

// Protobuf wire types.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };
constexpr int kWireTypeBits = 3;
constexpr uint32_t kWireTypeMask = 0x7;
constexpr int kVarintPayloadBits = 7;
constexpr uint8_t kVarintPayloadMask = 0x7F;
constexpr uint8_t kVarintContinues = 0x80;
constexpr int kMaxVarintBytes = 10;

// Field numbers from sentencepiece_model.proto.
namespace field {
constexpr uint32_t kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3;
constexpr uint32_t kPiecePiece = 1, kPieceScore = 2, kPieceType = 3;
constexpr uint32_t kTrainerModelType = 3, kTrainerVocabSize = 4, kTrainerByteFallback = 35, kTrainerUnkId = 40,
                   kTrainerBosId = 41, kTrainerEosId = 42, kTrainerPadId = 43;
constexpr uint32_t kNormalizerName = 1, kNormalizerCharsmap = 2, kNormalizerAddDummyPrefix = 3,
                   kNormalizerRemoveExtraWhitespaces = 4, kNormalizerEscapeWhitespaces = 5;
}  // namespace field

class WireReader {
public:
    WireReader(std::string_view bytes, std::string_view source) : bytes_(bytes), source_(source) {}

    bool done() const { return pos_ == bytes_.size(); }

    uint64_t varint() {
        uint64_t value = 0;
        for (int i = 0; i < kMaxVarintBytes; ++i) {
            if (pos_ >= bytes_.size()) bad("a varint runs past the end");
            const auto byte = static_cast<uint8_t>(bytes_[pos_++]);
            value |= static_cast<uint64_t>(byte & kVarintPayloadMask) << (kVarintPayloadBits * i);
            if (!(byte & kVarintContinues)) return value;
        }
        bad("a varint is longer than 10 bytes");
    }

    // Reads a field key: the field number and its wire type.
    std::pair<uint32_t, uint32_t> key() {
        const uint64_t tag = varint();
        return {static_cast<uint32_t>(tag >> kWireTypeBits), static_cast<uint32_t>(tag & kWireTypeMask)};
    }

    std::string_view bytes_field() {
        const uint64_t length = varint();
        if (length > bytes_.size() - pos_) bad("a field runs past the end");
        const std::string_view out = bytes_.substr(pos_, length);
        pos_ += length;
        return out;
    }

    uint32_t fixed32() {
        if (bytes_.size() - pos_ < sizeof(uint32_t)) bad("a fixed32 field runs past the end");
        uint32_t value = 0;
        std::memcpy(&value, bytes_.data() + pos_, sizeof(value));  // protobuf is little-endian, as is the host
        pos_ += sizeof(value);
        return value;
    }

    void skip(uint32_t wire_type) {
        switch (wire_type) {
            case kVarint: varint(); return;
            case kFixed64:
                if (bytes_.size() - pos_ < sizeof(uint64_t)) bad("a fixed64 field runs past the end");
                pos_ += sizeof(uint64_t);
                return;
            case kLengthDelimited: bytes_field(); return;
            case kFixed32: fixed32(); return;
            default: bad(concat("unsupported wire type ", wire_type));
        }
    }

    void expect(uint32_t wire_type, uint32_t wanted, const char* what) {
        if (wire_type != wanted) bad(concat(what, " has wire type ", wire_type, ", expected ", wanted));
    }

    [[noreturn]] void bad(const std::string& what) const {
        fail(source_, ": not a valid SentencePiece model: ", what, " (at byte ", pos_, ")");
    }

private:
    std::string_view bytes_;
    std::string_view source_;
    size_t pos_ = 0;
};

int32_t as_int32(uint64_t varint) { return static_cast<int32_t>(static_cast<int64_t>(varint)); }

SpmPiece parse_piece(WireReader& reader) {
    SpmPiece piece;
    bool has_piece = false;
    while (!reader.done()) {
        const auto [number, wire] = reader.key();
        if (number == field::kPiecePiece) {
            reader.expect(wire, kLengthDelimited, "SentencePiece.piece");
            piece.piece = std::string(reader.bytes_field());
            has_piece = true;
        } else if (number == field::kPieceScore) {
            reader.expect(wire, kFixed32, "SentencePiece.score");
            piece.score = std::bit_cast<float>(reader.fixed32());
        } else if (number == field::kPieceType) {
            reader.expect(wire, kVarint, "SentencePiece.type");
            const int32_t type = as_int32(reader.varint());
            if (type < static_cast<int32_t>(SpmPieceType::Normal) || type > static_cast<int32_t>(SpmPieceType::Byte)) {
                reader.bad(concat("piece type ", type, " is not defined"));
            }
            piece.type = static_cast<SpmPieceType>(type);
        } else {
            reader.skip(wire);
        }
    }
    if (!has_piece) reader.bad("a piece has no text");
    return piece;
}

void parse_trainer_spec(WireReader& reader, SpmModel& model) {
    while (!reader.done()) {
        const auto [number, wire] = reader.key();
        // wire is copied into the lambda: clang before 16 cannot capture a structured binding.
        const auto read_int = [&reader, wire = wire](const char* what) {
            reader.expect(wire, kVarint, what);
            return as_int32(reader.varint());
        };
        if (number == field::kTrainerModelType) {
            model.model_type = static_cast<SpmModelType>(read_int("TrainerSpec.model_type"));
        } else if (number == field::kTrainerByteFallback) {
            model.byte_fallback = read_int("TrainerSpec.byte_fallback") != 0;
        } else if (number == field::kTrainerUnkId) {
            model.unk_id = read_int("TrainerSpec.unk_id");
        } else if (number == field::kTrainerBosId) {
            model.bos_id = read_int("TrainerSpec.bos_id");
        } else if (number == field::kTrainerEosId) {
            model.eos_id = read_int("TrainerSpec.eos_id");
        } else if (number == field::kTrainerPadId) {
            model.pad_id = read_int("TrainerSpec.pad_id");
        } else {
            reader.skip(wire);
        }
    }
}

void parse_normalizer_spec(WireReader& reader, SpmModel& model) {
    while (!reader.done()) {
        const auto [number, wire] = reader.key();
        // wire is copied into the lambda: clang before 16 cannot capture a structured binding.
        const auto read_bool = [&reader, wire = wire](const char* what) {
            reader.expect(wire, kVarint, what);
            return reader.varint() != 0;
        };
        if (number == field::kNormalizerName) {
            reader.expect(wire, kLengthDelimited, "NormalizerSpec.name");
            model.normalizer_name = std::string(reader.bytes_field());
        } else if (number == field::kNormalizerCharsmap) {
            reader.expect(wire, kLengthDelimited, "NormalizerSpec.precompiled_charsmap");
            model.precompiled_charsmap = std::string(reader.bytes_field());
        } else if (number == field::kNormalizerAddDummyPrefix) {
            model.add_dummy_prefix = read_bool("NormalizerSpec.add_dummy_prefix");
        } else if (number == field::kNormalizerRemoveExtraWhitespaces) {
            model.remove_extra_whitespaces = read_bool("NormalizerSpec.remove_extra_whitespaces");
        } else if (number == field::kNormalizerEscapeWhitespaces) {
            model.escape_whitespaces = read_bool("NormalizerSpec.escape_whitespaces");
        } else {
            reader.skip(wire);
        }
    }
}

class WireWriter {
public:
    void varint(uint64_t value) {
        while (value >= kVarintContinues) {
            out_ += static_cast<char>((value & kVarintPayloadMask) | kVarintContinues);
            value >>= kVarintPayloadBits;
        }
        out_ += static_cast<char>(value);
    }
    void key(uint32_t number, uint32_t wire_type) { varint((static_cast<uint64_t>(number) << kWireTypeBits) | wire_type); }
    void bytes_field(uint32_t number, std::string_view bytes) {
        key(number, kLengthDelimited);
        varint(bytes.size());
        out_.append(bytes);
    }
    // int32 fields carry negative values sign-extended to 64 bits, as protobuf encodes them.
    void int_field(uint32_t number, int64_t value) {
        key(number, kVarint);
        varint(static_cast<uint64_t>(value));
    }
    void float_field(uint32_t number, float value) {
        key(number, kFixed32);
        const auto bits = std::bit_cast<uint32_t>(value);
        char raw[sizeof(bits)];
        std::memcpy(raw, &bits, sizeof(bits));
        out_.append(raw, sizeof(raw));
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

}  // namespace

SpmModel parse_spm_model(std::string_view serialized, std::string_view source) {
    SpmModel model;
    WireReader reader(serialized, source);
    if (reader.done()) reader.bad("the file is empty");
    while (!reader.done()) {
        const auto [number, wire] = reader.key();
        if (number == field::kModelPieces) {
            reader.expect(wire, kLengthDelimited, "ModelProto.pieces");
            WireReader sub(reader.bytes_field(), source);
            model.pieces.push_back(parse_piece(sub));
        } else if (number == field::kModelTrainerSpec) {
            reader.expect(wire, kLengthDelimited, "ModelProto.trainer_spec");
            WireReader sub(reader.bytes_field(), source);
            parse_trainer_spec(sub, model);
        } else if (number == field::kModelNormalizerSpec) {
            reader.expect(wire, kLengthDelimited, "ModelProto.normalizer_spec");
            WireReader sub(reader.bytes_field(), source);
            parse_normalizer_spec(sub, model);
        } else {
            reader.skip(wire);
        }
    }
    if (model.pieces.empty()) reader.bad("it has no pieces");
    return model;
}

std::string serialize_spm_model(const SpmModel& model) {
    WireWriter out;
    for (const SpmPiece& piece : model.pieces) {
        WireWriter sub;
        sub.bytes_field(field::kPiecePiece, piece.piece);
        sub.float_field(field::kPieceScore, piece.score);
        sub.int_field(field::kPieceType, static_cast<int32_t>(piece.type));
        out.bytes_field(field::kModelPieces, sub.take());
    }
    WireWriter trainer;
    trainer.int_field(field::kTrainerModelType, static_cast<int32_t>(model.model_type));
    trainer.int_field(field::kTrainerVocabSize, static_cast<int64_t>(model.pieces.size()));
    trainer.int_field(field::kTrainerByteFallback, model.byte_fallback ? 1 : 0);
    trainer.int_field(field::kTrainerUnkId, model.unk_id);
    trainer.int_field(field::kTrainerBosId, model.bos_id);
    trainer.int_field(field::kTrainerEosId, model.eos_id);
    trainer.int_field(field::kTrainerPadId, model.pad_id);
    out.bytes_field(field::kModelTrainerSpec, trainer.take());

    WireWriter normalizer;
    normalizer.bytes_field(field::kNormalizerName, model.normalizer_name);
    if (!model.precompiled_charsmap.empty()) {
        normalizer.bytes_field(field::kNormalizerCharsmap, model.precompiled_charsmap);
    }
    normalizer.int_field(field::kNormalizerAddDummyPrefix, model.add_dummy_prefix ? 1 : 0);
    normalizer.int_field(field::kNormalizerRemoveExtraWhitespaces, model.remove_extra_whitespaces ? 1 : 0);
    normalizer.int_field(field::kNormalizerEscapeWhitespaces, model.escape_whitespaces ? 1 : 0);
    out.bytes_field(field::kModelNormalizerSpec, normalizer.take());
    return out.take();
}

}  // namespace dendro
