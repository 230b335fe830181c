#include "reference_math.h"

#include <cmath>

#include "format/ggml_types.h"

namespace dendro::test {

std::vector<double> to_double(const TensorView& t) {
    if (!t.present()) return {};
    std::vector<double> out;
    std::vector<float> row(static_cast<size_t>(t.row_length()));
    for (int64_t r = 0; r < t.n_rows(); ++r) {
        dequantize_row(t.type, t.row(r), row.data(), t.row_length());
        out.insert(out.end(), row.begin(), row.end());
    }
    return out;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

double softplus(double x) {
    constexpr double kThreshold = 20.0;
    return x > kThreshold ? x : std::log1p(std::exp(x));
}

std::vector<double> linear(const std::vector<double>& w, const std::vector<double>& b, const double* x, int64_t n_in,
                           int64_t n_out) {
    std::vector<double> y(n_out);
    for (int64_t o = 0; o < n_out; ++o) {
        double s = b.empty() ? 0.0 : b[o];
        for (int64_t i = 0; i < n_in; ++i) s += w[o * n_in + i] * x[i];
        y[o] = s;
    }
    return y;
}

}  // namespace dendro::test
