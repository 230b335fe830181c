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

std::vector<float> to_f32_transposed(const TensorView& t) {
    const std::vector<float> rows = to_f32(t);
    std::vector<float> columns(rows.size());
    const int64_t n_rows = t.n_rows(), length = t.row_length();
    for (int64_t r = 0; r < n_rows && !rows.empty(); ++r) {
        for (int64_t i = 0; i < length; ++i) columns[i * n_rows + r] = rows[r * length + i];
    }
    return columns;
}

uint64_t float_bytes(std::initializer_list<const std::vector<float>*> vectors) {
    uint64_t total = 0;
    for (const std::vector<float>* v : vectors) total += v->size() * sizeof(float);
    return total;
}

}  // namespace dendro::cpu
