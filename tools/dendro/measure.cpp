#include "measure.h"

#include <algorithm>
#include <cmath>

namespace dendro::cli {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

MeanSd mean_and_sd(const std::vector<double>& values) {
    MeanSd result;
    if (values.empty()) return result;
    for (double v : values) result.mean += v;
    result.mean /= static_cast<double>(values.size());
    if (values.size() > 1) {
        double sum_sq = 0.0;
        for (double v : values) sum_sq += (v - result.mean) * (v - result.mean);
        result.sd = std::sqrt(sum_sq / static_cast<double>(values.size() - 1));
    }
    return result;
}

double median(std::vector<double> values) {
    if (values.empty()) return 0.0;
    const size_t middle = values.size() / 2;
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle), values.end());
    const double upper = values[middle];
    if (values.size() % 2 == 1) return upper;
    return (*std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle)) + upper) / 2.0;
}

}  // namespace dendro::cli
