// SentencePiece (tokenizer.ggml.model "llama") through the sentencepiece library. The model is the original
// ModelProto stored under kSpmModelKey when the file has it; otherwise a BPE ModelProto is rebuilt from
// tokens, scores and types (llama.cpp's "llama" vocabularies are SentencePiece BPE models), with the
// normalizer settings from tokenizer.ggml.add_space_prefix / remove_extra_whitespaces.
// Special tokens (CONTROL, USER_DEFINED, UNKNOWN) written in the text are cut out first, longest match, and
// each text piece between them is encoded on its own, so each gets SentencePiece's dummy-prefix space, as
// llama.cpp and mistral-common do.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace dendro {

// Throws dendro::Error naming `source` unless the sentencepiece library loads the serialized ModelProto.
void check_spm_model_loads(std::string_view serialized, std::string_view source);

class SpmTokenizer final : public Tokenizer {
public:
    SpmTokenizer(const GgufFile& file, Vocabulary vocab);
    ~SpmTokenizer() override;

    std::string model_name() const override;
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
    std::string decode(std::span<const int32_t> ids) const override;

private:
    void load_stored_model(const GgufFile& file);
    void load_rebuilt_model(const GgufFile& file);

    std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
    SpecialTokenMatcher specials_;
    // Whether decode() drops the space SentencePiece put before the text (the dummy prefix), and whether it
    // drops every leading space (when the model also removed extra whitespace on encoding).
    bool strip_leading_space_ = true;
    bool strip_all_leading_spaces_ = false;
};

}  // namespace dendro
