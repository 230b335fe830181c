// Temporary random-weight Mamba model files for tests (written by tools/convert/random_model.h).
#pragma once

#include <cstdint>
#include <string>

#include "format/ggml_types.h"
#include "model/model.h"
#include "random_model.h"
#include "temp_dir.h"

namespace dendro::test {

// Small shapes: any_length() has dimensions that are not multiples of 8 (exercising every row tail) and
// inner_size != 2 * d_model; q8() has the multiples of 32 that Q8_0 rows need, except dt_rank (so that a
// Q8_0 file mixes in an F16 matrix).
ModelHparams tiny_hparams_any_length();
ModelHparams tiny_hparams_q8();
// A small model with room for a byte-level vocabulary (256 byte tokens and a few more), for CLI tests where
// any text must be a prompt: use with byte_tokenizer_options().
ModelHparams tiny_hparams_byte_vocab();
// The same for Mamba-2 (2 groups of 4 heads of 8 channels).
ModelHparams tiny_mamba2_hparams_byte_vocab();
RandomModelOptions byte_tokenizer_options();

// Writes a random model into a fresh temporary directory, removed at destruction. For the quant types that
// Dendro only reads, the matrices are random blocks (see random_quant_model.h).
class TempModelFile {
public:
    TempModelFile(const ModelHparams& hp, GgmlType matrix_type, uint64_t seed = 1, bool tied = true,
                  const RandomModelOptions& options = {});

    const std::string& path() const { return path_; }

private:
    TempDir dir_;
    std::string path_;
};

}  // namespace dendro::test
