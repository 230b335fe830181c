// Dendro's quantizers (format/ggml_quantize.h): byte for byte gguf-py's output for the legacy quants and
// Q8_0; for the k-quants an error no worse than ggml's reference quantizer's by more than kKQuantMseFactor;
// quantize -> dequantize round trips within each type's error bound on random and adversarial rows; and
// values a block can hold are reproduced exactly when quantized again. Fixture: tests/data/quantize, made
// by tools/make_quantize_fixtures.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "format/ggml_quantize.h"
#include "format/ggml_types.h"
#include "format/gguf.h"

namespace dendro {
namespace {

const std::string kFixture = std::string(DENDRO_TEST_DATA) + "/quantize/quantize_reference.gguf";

// Our k-quant squared error on a fixture row may exceed ggml's by at most this factor (the same search; ours
// also tries the neighbours of each rounded 6-bit scale and min, which makes it better on most rows, and
// near-ties in the search fall either way), plus kScaleRoundingEnergy of the row's energy sum x^2: what
// rounding the fp16 super-block scale and min alone may cost (2 * 2^-11 relative per value, squared), which
// is all the error of rows that a block holds exactly (a single non-zero value). Over all rows together ours
// is no worse than ggml's.
constexpr double kKQuantMseFactor = 1.02;
constexpr double kScaleRoundingEnergy = 1.0 / (1 << 20);

int64_t block_size(GgmlType type) { return ggml_type_traits(static_cast<uint32_t>(type))->block_size; }

std::vector<uint8_t> quantized(GgmlType type, const float* x, int64_t n) {
    std::vector<uint8_t> bytes(ggml_row_size(type, n));
    quantize_row(type, x, bytes.data(), n);
    return bytes;
}

std::vector<float> dequantized(GgmlType type, const uint8_t* bytes, int64_t n) {
    std::vector<float> values(static_cast<size_t>(n));
    dequantize_row(type, bytes, values.data(), n);
    return values;
}

std::vector<float> round_trip(GgmlType type, const float* x, int64_t n) {
    return dequantized(type, quantized(type, x, n).data(), n);
}

double energy(const float* x, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
    return sum;
}

double squared_error(const float* x, const std::vector<float>& y) {
    double sum = 0;
    for (size_t i = 0; i < y.size(); ++i) sum += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    return sum;
}

class ReferenceFixture : public ::testing::Test {
protected:
    static void SetUpTestSuite() { file_ = GgufFile::open(kFixture).release(); }
    static void TearDownTestSuite() {
        delete file_;
        file_ = nullptr;
    }
    static const GgufTensorInfo& tensor(const std::string& name) {
        const GgufTensorInfo* info = file_->find_tensor(name);
        if (info == nullptr) fail(kFixture, " has no tensor ", name, ": run tools/make_quantize_fixtures.py");
        return *info;
    }
    static const float* rows() { return reinterpret_cast<const float*>(tensor("rows").data); }
    static int64_t row_length() { return tensor("rows").ne[0]; }
    static int64_t n_rows() { return tensor("rows").ne[1]; }
    static GgufFile* file_;
};
GgufFile* ReferenceFixture::file_ = nullptr;

TEST_F(ReferenceFixture, LegacyQuantsAndQ8_0AreGgufPysBytes) {
    for (const GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0}) {
        const GgufTensorInfo& reference = tensor(ggml_type_name(type));
        ASSERT_EQ(reference.type, type);
        const size_t row_bytes = ggml_row_size(type, row_length());
        for (int64_t r = 0; r < n_rows(); ++r) {
            const std::vector<uint8_t> ours = quantized(type, rows() + r * row_length(), row_length());
            ASSERT_EQ(std::memcmp(ours.data(), reference.data + r * row_bytes, row_bytes), 0)
                << ggml_type_name(type) << " row " << r << " differs from gguf-py's";
        }
    }
}

TEST_F(ReferenceFixture, KQuantErrorNoWorseThanGgmlsReference) {
    for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        const GgufTensorInfo& reference = tensor(ggml_type_name(type));
        ASSERT_EQ(reference.type, type);
        const size_t row_bytes = ggml_row_size(type, row_length());
        double ours_total = 0, reference_total = 0;
        for (int64_t r = 0; r < n_rows(); ++r) {
            const float* x = rows() + r * row_length();
            const double ours = squared_error(x, round_trip(type, x, row_length()));
            const double theirs = squared_error(x, dequantized(type, reference.data + r * row_bytes, row_length()));
            ours_total += ours;
            reference_total += theirs;
            EXPECT_LE(ours, kKQuantMseFactor * theirs + kScaleRoundingEnergy * energy(x, row_length()))
                << ggml_type_name(type) << " row " << r << ": ggml's squared error " << theirs;
        }
        EXPECT_LE(ours_total, reference_total) << ggml_type_name(type);
    }
}

// The largest error a value of a block may have after a round trip, from the block's largest magnitude and
// range (max - min): half a quant step where the grid covers the block, a whole step where the symmetric
// types clip the value of the sign opposite to their largest one (q = -2^(bits-1) is the largest magnitude,
// q = 2^(bits-1) - 1 one step short of it), plus kScaleRounding of amax for the rounding of the fp16 scales
// to 11 bits, plus half the smallest fp16 step (2^-25) times the largest multiplier of a scale (quant times
// 6-bit or 8-bit sub-block scale), for scales that fp16 holds only as subnormals. The k-quants' 6-bit
// sub-block scales and mins may move a sub-block's grid by up to half a step of the super-block scale, and
// their search minimises the weighted squared error rather than the largest one, so their bound is one
// step of the super-block's coarsest grid (range / nmax; Q6_K: amax / 32), where their range reaches down to
// zero at least (a min that is subtracted is never negative, so a grid never starts above zero).
constexpr double kScaleRounding = 1.0 / (1 << 10);
constexpr double kHalfSubnormalStep = 1.0 / (1 << 25);
struct ErrorBound {
    GgmlType type;
    double per_amax, per_range, max_multiplier;
    bool range_from_zero;
    double gaussian_rms;  // relative RMS error on standard normal rows, measured + 5 % (RelativeRmsError...)
};
const ErrorBound kErrorBounds[] = {
    {GgmlType::Q4_0, 1.0 / 8, 0, 8, false, 0.0904},           {GgmlType::Q5_0, 1.0 / 16, 0, 16, false, 0.0449},
    {GgmlType::Q8_0, 1.0 / 254, 0, 127, false, 0.00563},       {GgmlType::Q4_1, 0, 1.0 / 30, 15 + 1, false, 0.0822},
    {GgmlType::Q5_1, 0, 1.0 / 62, 31 + 1, false, 0.0398},     {GgmlType::Q4_K, 0, 1.0 / 15, 63 * 15 + 63, true, 0.0739},
    {GgmlType::Q5_K, 0, 1.0 / 31, 63 * 31 + 63, true, 0.0367}, {GgmlType::Q6_K, 1.0 / 32, 0, 128 * 32, false, 0.0186},
};

// Rows of 512 (2 super-blocks, 16 legacy blocks): random ones of several distributions and adversarial ones.
std::vector<std::vector<float>> test_rows() {
    constexpr int64_t n = 512;
    std::mt19937_64 rng(2026);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    std::student_t_distribution<float> heavy(2.0f);
    std::vector<std::vector<float>> rows;
    const auto make = [&](auto value) {
        std::vector<float> row(n);
        for (int64_t i = 0; i < n; ++i) row[i] = value(i);
        rows.push_back(std::move(row));
    };
    for (int k = 0; k < 8; ++k) {
        make([&](int64_t) { return normal(rng); });
        make([&](int64_t) { return 0.03f * uniform(rng); });
        make([&](int64_t) { return heavy(rng); });
        make([&](int64_t) { return 3.0f + 0.1f * normal(rng); });
    }
    make([](int64_t) { return 0.0f; });                                          // all zeros
    make([&](int64_t i) { return i == 100 ? 5.0e4f : 0.01f * normal(rng); });   // one huge outlier
    make([](int64_t) { return -0.4f; });                                         // constant
    make([&](int64_t) { return -std::fabs(normal(rng)); });                     // negative only
    make([&](int64_t) { return std::fabs(normal(rng)) + 2.0f; });               // positive only, offset
    make([&](int64_t) { return 1e-7f * normal(rng); });                         // fp16-subnormal scales
    make([](int64_t i) { return i % 64 == 0 ? 1.0f : 0.0f; });                  // sparse
    make([](int64_t i) { return static_cast<float>(i % 7) - 3.0f; });           // a few levels
    return rows;
}

TEST(QuantizeRoundTrip, EveryValueWithinItsTypesBound) {
    for (const ErrorBound& bound : kErrorBounds) {
        const int64_t block = std::max<int64_t>(block_size(bound.type), 1);
        for (const std::vector<float>& row : test_rows()) {
            const int64_t n = static_cast<int64_t>(row.size());
            const std::vector<float> back = round_trip(bound.type, row.data(), n);
            for (int64_t b = 0; b < n; b += block) {
                const auto [lo, hi] = std::minmax_element(row.begin() + b, row.begin() + b + block);
                const double amax = std::max(std::fabs(*lo), std::fabs(*hi));
                const double range = bound.range_from_zero ? std::max(*hi, 0.0f) - std::min(*lo, 0.0f) : *hi - *lo;
                const double limit = bound.per_amax * amax + bound.per_range * range + kScaleRounding * amax +
                                     kHalfSubnormalStep * bound.max_multiplier;
                for (int64_t i = b; i < b + block; ++i) {
                    ASSERT_TRUE(std::isfinite(back[i])) << ggml_type_name(bound.type) << " element " << i;
                    const double error = std::fabs(static_cast<double>(back[i]) - row[i]);
                    ASSERT_LE(error, limit) << ggml_type_name(bound.type) << " element " << i << ": " << row[i]
                                            << " came back as " << back[i];
                }
            }
        }
    }
}

TEST(QuantizeRoundTrip, ZeroAndConstantRows) {
    for (const ErrorBound& bound : kErrorBounds) {
        const std::vector<float> zeros(512, 0.0f);
        for (const float v : round_trip(bound.type, zeros.data(), 512)) ASSERT_EQ(v, 0.0f) << ggml_type_name(bound.type);
    }
}

// Relative RMS error sqrt(sum (x - x')^2 / sum x^2) on rows of standard normal values: the figures that
// docs/quantization.md quotes, each within 5 % of its measured value.
TEST(QuantizeRoundTrip, RelativeRmsErrorOnGaussianRows) {
    std::mt19937_64 rng(99);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(64 * 512);
    for (float& v : x) v = normal(rng);
    for (const ErrorBound& bound : kErrorBounds) {
        const std::vector<float> back = round_trip(bound.type, x.data(), static_cast<int64_t>(x.size()));
        const double relative = std::sqrt(squared_error(x.data(), back) / energy(x.data(), static_cast<int64_t>(x.size())));
        EXPECT_LE(relative, bound.gaussian_rms) << ggml_type_name(bound.type);
    }
}

// Values a block holds are reproduced exactly when quantized again (what the dequantizer reads is a fixed
// point): for the legacy quants and Q8_0 every round trip's output; for the k-quants, whose search need not
// land on the one grid that fits exactly, blocks in which every sub-block uses its whole quant range and the
// largest sub-block scale (and min) is the largest that the 6 or 8 bits hold, so the range fit is exact.
TEST(QuantizeRoundTrip, RepresentableValuesAreReproducedExactly) {
    for (const GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0}) {
        for (const std::vector<float>& row : test_rows()) {
            const int64_t n = static_cast<int64_t>(row.size());
            const std::vector<float> once = round_trip(type, row.data(), n);
            ASSERT_EQ(round_trip(type, once.data(), n), once) << ggml_type_name(type);
        }
    }
}

// Values of k-quant super-blocks built as the dequantizer computes them: (d * scale) * q - (dmin * min).
std::vector<float> representable_k_quant_values(GgmlType type, int n_blocks, uint64_t seed) {
    constexpr int kSuperBlock = 256;
    const bool six_bit = type == GgmlType::Q6_K;
    const int sub_block = six_bit ? 16 : 32, n_sub = kSuperBlock / sub_block;
    const int nmax = type == GgmlType::Q4_K ? 15 : 31;
    std::mt19937_64 rng(seed);
    std::vector<float> values;
    for (int b = 0; b < n_blocks; ++b) {
        const float d = fp16_to_fp32(fp32_to_fp16(std::uniform_real_distribution<float>(1e-4f, 1e-2f)(rng)));
        const float dmin = fp16_to_fp32(fp32_to_fp16(std::uniform_real_distribution<float>(1e-4f, 1e-2f)(rng)));
        const int largest = static_cast<int>(rng() % n_sub);
        for (int j = 0; j < n_sub; ++j) {
            std::vector<int> q(static_cast<size_t>(sub_block));
            if (six_bit) {
                // Q6_K: scales in [-128, -1] with one at -128, every sub-block reaching q = -32.
                const int scale = j == largest ? -128 : -1 - static_cast<int>(rng() % 127);
                for (int& v : q) v = static_cast<int>(rng() % 64) - 32;
                q[rng() % q.size()] = -32;
                for (const int v : q) values.push_back((d * static_cast<float>(scale)) * static_cast<float>(v));
            } else {
                // Q4_K/Q5_K: scales in [1, 63] and mins in [0, 63], one of each at 63, quants spanning [0, nmax].
                const int scale = j == largest ? 63 : 1 + static_cast<int>(rng() % 63);
                const int min = j == largest ? 63 : static_cast<int>(rng() % 64);
                for (int& v : q) v = static_cast<int>(rng() % static_cast<uint64_t>(nmax + 1));
                q[0] = 0;
                q[1] = nmax;
                std::shuffle(q.begin(), q.end(), rng);
                for (const int v : q) {
                    values.push_back((d * static_cast<float>(scale)) * static_cast<float>(v) - dmin * static_cast<float>(min));
                }
            }
        }
    }
    return values;
}

TEST(QuantizeRoundTrip, RepresentableKQuantBlocksAreReproducedExactly) {
    for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        const std::vector<float> values = representable_k_quant_values(type, 64, 5);
        const std::vector<float> back = round_trip(type, values.data(), static_cast<int64_t>(values.size()));
        for (size_t i = 0; i < values.size(); ++i) {
            ASSERT_EQ(back[i], values[i]) << ggml_type_name(type) << " element " << i;
        }
    }
}

// A weight that is not finite gives no undefined behaviour (the sanitizer build checks the conversions to
// integers), and the blocks without it are quantized as usual.
TEST(Quantize, NonFiniteValuesStayInTheirBlocks) {
    for (const ErrorBound& bound : kErrorBounds) {
        std::vector<float> row(512, 0.25f);
        row[3] = std::numeric_limits<float>::quiet_NaN();
        row[5] = std::numeric_limits<float>::infinity();
        const std::vector<float> back = round_trip(bound.type, row.data(), 512);
        for (size_t i = 256; i < back.size(); ++i) ASSERT_NEAR(back[i], 0.25f, 0.01f) << ggml_type_name(bound.type);
    }
}

TEST(Quantize, TypesItCanWrite) {
    for (const ErrorBound& bound : kErrorBounds) EXPECT_TRUE(can_quantize_to(bound.type)) << ggml_type_name(bound.type);
    for (const GgmlType type : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ4_NL, GgmlType::Q8_1}) {
        EXPECT_FALSE(can_quantize_to(type)) << ggml_type_name(type);
        std::vector<float> x(256, 1.0f);
        std::vector<uint8_t> out(1024);
        EXPECT_THROW(quantize_row(type, x.data(), out.data(), 256), Error) << ggml_type_name(type);
    }
}

}  // namespace
}  // namespace dendro
