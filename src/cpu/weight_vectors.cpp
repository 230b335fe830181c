#include "cpu/weight_vectors.h"

#include "format/ggml_types.h"

namespace dendro::cpu {

std::vector<float> to_f32(const TensorView& t) {
    if (!t.present()) return {};
    std::vector<float> values(static_cast<size_t>(t.row_length() * t.n_rows()));
    for (int64_t r = 0; r < t.n_rows(); ++r) {
        dequantize_row(t.type, t.row(r), values.data() + r * t.row_length(), t.row_length());
    }
    return values;
}

uint64_t float_bytes(std::initializer_list<const std::vector<float>*> vectors) {
    uint64_t total = 0;
    for (const std::vector<float>* v : vectors) total += v->size() * sizeof(float);
    return total;
}

}  // namespace dendro::cpu
