// The loading rules of each architecture, one file each (model_mamba1.cpp, model_mamba2.cpp): its keys and
// its layers' tensors. Model::from_gguf picks one by general.architecture.
#pragma once

#include <cstdint>

#include "model/model.h"
#include "model/tensor_loader.h"

namespace dendro {

// Fills everything but n_vocab (which the embedding gives) from the file's "<arch>.*" keys.
ModelHparams read_mamba1_hparams(const TensorLoader& loader);
LayerWeights load_mamba1_layer(const TensorLoader& loader, const ModelHparams& hp, int64_t layer);

ModelHparams read_mamba2_hparams(const TensorLoader& loader);
LayerWeights load_mamba2_layer(const TensorLoader& loader, const ModelHparams& hp, int64_t layer);

}  // namespace dendro
