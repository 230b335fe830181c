// Temporary random-weight model files for tests.
#include "random_model_file.h"

#include <algorithm>

#include "random_quant_model.h"

namespace dendro::test {

ModelHparams tiny_hparams_any_length() {
    ModelHparams hp;
    hp.n_vocab = 97;
    hp.d_model = 44;
    hp.n_layer = 3;
    hp.d_conv = 4;
    hp.d_inner = 84;
    hp.d_state = 6;
    hp.dt_rank = 3;
    hp.norm_eps = 1e-5f;
    return hp;
}

ModelHparams tiny_hparams_q8() {
    ModelHparams hp;
    hp.n_vocab = 100;
    hp.d_model = 64;
    hp.n_layer = 2;
    hp.d_conv = 4;
    hp.d_inner = 96;
    hp.d_state = 8;
    hp.dt_rank = 4;  // not a multiple of 32: ssm_dt is written as F16 beside the Q8_0 matrices
    hp.norm_eps = 1e-5f;
    return hp;
}

ModelHparams tiny_hparams_byte_vocab() {
    ModelHparams hp;
    hp.n_vocab = 260;
    hp.d_model = 32;
    hp.n_layer = 2;
    hp.d_conv = 4;
    hp.d_inner = 64;
    hp.d_state = 8;
    hp.dt_rank = 4;
    return hp;
}

ModelHparams tiny_mamba2_hparams_byte_vocab() {
    ModelHparams hp = tiny_hparams_byte_vocab();
    hp.arch = Architecture::Mamba2;
    hp.dt_rank = 0;
    hp.d_state = 12;
    hp.n_head = 8;
    hp.head_dim = 8;
    hp.n_group = 2;
    return hp;
}

RandomModelOptions byte_tokenizer_options() {
    RandomModelOptions options;
    options.byte_tokenizer = true;
    return options;
}

TempModelFile::TempModelFile(const ModelHparams& hp, GgmlType matrix_type, uint64_t seed, bool tied,
                             const RandomModelOptions& options)
    : path_(dir_.file("random-mamba.gguf")) {
    const auto& quants = read_only_quant_types();
    if (std::find(quants.begin(), quants.end(), matrix_type) != quants.end()) {
        write_random_quant_mamba_gguf(path_, hp, matrices_of_type(matrix_type), seed, tied, options);
    } else {
        write_random_mamba_gguf(path_, hp, matrix_type, seed, tied, options);
    }
}

}  // namespace dendro::test
