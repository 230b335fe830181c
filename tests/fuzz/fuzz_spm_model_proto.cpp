// SentencePiece ModelProto bytes -> parse_spm_model; what parses must serialize and parse back to the same
// fields (serialize_spm_model writes only the fields Dendro reads, so the second parse sees those).
#include <bit>
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "tokenizer/spm_model_proto.h"

namespace {

bool same_fields(const dendro::SpmModel& a, const dendro::SpmModel& b) {
    if (a.pieces.size() != b.pieces.size()) return false;
    for (size_t i = 0; i < a.pieces.size(); ++i) {
        const dendro::SpmPiece &x = a.pieces[i], &y = b.pieces[i];
        // Scores compare as bits: NaN payloads must survive too.
        if (x.piece != y.piece || std::bit_cast<uint32_t>(x.score) != std::bit_cast<uint32_t>(y.score) ||
            x.type != y.type) {
            return false;
        }
    }
    return a.model_type == b.model_type && a.byte_fallback == b.byte_fallback && a.unk_id == b.unk_id &&
           a.bos_id == b.bos_id && a.eos_id == b.eos_id && a.pad_id == b.pad_id &&
           a.normalizer_name == b.normalizer_name && a.precompiled_charsmap == b.precompiled_charsmap &&
           a.add_dummy_prefix == b.add_dummy_prefix && a.remove_extra_whitespaces == b.remove_extra_whitespaces &&
           a.escape_whitespaces == b.escape_whitespaces;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dendro::fuzz::reject_with_dendro_error([&] {
        const dendro::SpmModel model = dendro::parse_spm_model(dendro::fuzz::as_text(data, size), "fuzz input");
        const dendro::SpmModel again = dendro::parse_spm_model(dendro::serialize_spm_model(model), "reserialized");
        dendro::fuzz::require(same_fields(model, again), "serialize_spm_model(parse_spm_model(x)) lost fields");
    });
    return 0;
}
