#include "checkpoint_tensors.h"

namespace dendro {

int64_t CheckpointTensor::n_elements() const {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    return n;
}

std::string CheckpointTensor::shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

}  // namespace dendro
