// The model Dendro ships with (trained on tinyshakespeare by tools/train_bundled_model.py), found without
// a -m flag wherever the binary runs from: an installed prefix, the build tree, or the source tree.
#pragma once

#include <string>

namespace dendro::cli {

// File name of the bundled model inside a models directory.
extern const char* const kBundledModelFile;

// Path of the model to use when none is given. Looks, in order, at: the file named by the environment
// variable DENDRO_MODEL; <exe dir>/../share/dendro/models/<file> (an install prefix);
// <exe dir>/../../models/<file> (the build tree's bin/); the source tree's models/ directory.
// Throws dendro::Error listing every place it looked when none holds the model.
std::string default_model_path();

}  // namespace dendro::cli
