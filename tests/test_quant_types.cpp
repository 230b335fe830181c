// ggml's legacy quants and k-quants as Dendro reads them: dequantize_row against gguf-py's numpy
// dequantizer (tests/data/quant, made by tools/make_quant_fixtures.py), the CPU matmul's rows against the
// dequantized rows, and models mixing these types loaded and run on the CPU backend.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/matmul.h"
#include "common/error.h"
#include "format/gguf.h"
#include "model/model.h"
#include "random_quant_model.h"
#include "temp_dir.h"

namespace dendro {
namespace {

const std::string kFixture = std::string(DENDRO_TEST_DATA) + "/quant/quant_blocks.gguf";

std::vector<float> dequantized(const TensorView& w) {
    std::vector<float> values(static_cast<size_t>(w.row_length() * w.n_rows()));
    for (int64_t r = 0; r < w.n_rows(); ++r) {
        dequantize_row(w.type, w.row(r), values.data() + r * w.row_length(), w.row_length());
    }
    return values;
}

std::vector<float> random_values(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = value(rng);
    return v;
}

// y[t][r] for every row and token, computed by matmul_rows over the given row ranges (as threads share them).
std::vector<float> product(const TensorView& w, const std::vector<float>& x, int64_t n_tokens,
                           const std::vector<cpu::Range>& shares) {
    std::vector<float> y(static_cast<size_t>(n_tokens * w.n_rows()), NAN);
    for (const cpu::Range& share : shares) {
        cpu::matmul_rows(w, {x.data(), w.row_length()}, n_tokens, {y.data(), w.n_rows()}, share.begin, share.end);
    }
    return y;
}

// Checks that each output is, bit for bit, what the F32 matmul gives for the dequantized rows (the canonical
// fp32 dot product, whatever the tiling; computed by the library, whose instruction set the test need not
// share), and within fp32 rounding of the exact (double) dot product.
void expect_rows_match_dequantized(const TensorView& w, const std::vector<float>& x, int64_t n_tokens,
                                   const std::vector<float>& y) {
    const std::vector<float> values = dequantized(w);
    TensorView f32 = w;
    f32.type = GgmlType::F32;
    f32.data = reinterpret_cast<const uint8_t*>(values.data());
    f32.nbytes = values.size() * sizeof(float);
    const std::vector<float> canonical = product(f32, x, n_tokens, {{0, w.n_rows()}});
    const int64_t n = w.row_length();
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < w.n_rows(); ++r) {
            const float* row = values.data() + r * n;
            const float* token = x.data() + t * n;
            double exact = 0, magnitude = 0;
            for (int64_t i = 0; i < n; ++i) {
                exact += static_cast<double>(row[i]) * token[i];
                magnitude += std::fabs(static_cast<double>(row[i]) * token[i]);
            }
            const float got = y[t * w.n_rows() + r];
            ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(canonical[t * w.n_rows() + r]))
                << w.name << " row " << r << " token " << t;
            ASSERT_LE(std::fabs(got - exact), 1e-6 * magnitude + 1e-30) << w.name << " row " << r << " token " << t;
        }
    }
}

class QuantFixture : public ::testing::TestWithParam<GgmlType> {
protected:
    static void SetUpTestSuite() { file_ = GgufFile::open(kFixture).release(); }
    static void TearDownTestSuite() {
        delete file_;
        file_ = nullptr;
    }
    static const GgufTensorInfo& tensor(const std::string& name) {
        const GgufTensorInfo* info = file_->find_tensor(name);
        if (info == nullptr) fail(kFixture, " has no tensor ", name, ": run tools/make_quant_fixtures.py");
        return *info;
    }
    static GgufFile* file_;
};
GgufFile* QuantFixture::file_ = nullptr;

TEST_P(QuantFixture, DequantizeRowMatchesGgufPyExactly) {
    const GgmlType type = GetParam();
    const GgufTensorInfo& quants = tensor(ggml_type_name(type));
    const GgufTensorInfo& expected = tensor(ggml_type_name(type) + ".dequantized");
    ASSERT_EQ(quants.type, type);
    ASSERT_EQ(expected.type, GgmlType::F32);
    ASSERT_EQ(quants.ne, expected.ne);
    const std::vector<float> got = dequantized(TensorView::of(quants));
    ASSERT_EQ(got.size() * sizeof(float), expected.nbytes);
    const auto* want = reinterpret_cast<const float*>(expected.data);
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
            << "element " << i << ": " << got[i] << " vs gguf-py " << want[i];
    }
}

TEST_P(QuantFixture, MatmulRowsMatchDequantizedRows) {
    const TensorView w = TensorView::of(tensor(ggml_type_name(GetParam())));
    for (const int64_t n_tokens : {1, 4}) {
        const std::vector<float> x = random_values(static_cast<size_t>(n_tokens * w.row_length()), 7);
        expect_rows_match_dequantized(w, x, n_tokens, product(w, x, n_tokens, {{0, w.n_rows()}}));
    }
}

// Many rows of random blocks: every tile shape (8 rows when decoding, 4 x 3 in batches, the short tiles at
// the end) and any split of the rows among threads give the same outputs.
TEST_P(QuantFixture, MatmulDoesNotDependOnTilingOrRowShares) {
    const GgmlType type = GetParam();
    const int64_t row_length = 512, rows = 45;
    const int64_t blocks = row_length * rows / ggml_type_traits(static_cast<uint32_t>(type))->block_size;
    const std::vector<uint8_t> bytes = test::random_quant_blocks(type, blocks, 11, 0.5f);
    TensorView w;
    w.name = "random." + ggml_type_name(type);
    w.type = type;
    w.ne = {row_length, rows, 1, 1};
    w.data = bytes.data();
    w.nbytes = bytes.size();

    const int64_t n_tokens = 7;
    const std::vector<float> x = random_values(static_cast<size_t>(n_tokens * row_length), 3);
    const std::vector<float> batch = product(w, x, n_tokens, {{0, rows}});
    expect_rows_match_dequantized(w, x, n_tokens, batch);
    const std::vector<float> shared = product(w, x, n_tokens, {{0, 8}, {8, 16}, {16, 40}, {40, rows}});
    EXPECT_EQ(0, std::memcmp(batch.data(), shared.data(), batch.size() * sizeof(float)));
    for (int64_t t = 0; t < n_tokens; ++t) {
        const std::vector<float> token(x.begin() + t * row_length, x.begin() + (t + 1) * row_length);
        const std::vector<float> alone = product(w, token, 1, {{0, rows}});
        ASSERT_EQ(0, std::memcmp(alone.data(), batch.data() + t * rows, rows * sizeof(float))) << "token " << t;
    }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantFixture, ::testing::ValuesIn(test::read_only_quant_types()),
                         [](const ::testing::TestParamInfo<GgmlType>& info) { return ggml_type_name(info.param); });

TEST(QuantTypes, AreSupportedForMatricesAndReadByTheLoader) {
    for (const GgmlType type : test::read_only_quant_types()) {
        SCOPED_TRACE(ggml_type_name(type));
        EXPECT_TRUE(cpu::supported_matrix_type(type));
        EXPECT_TRUE(ggml_type_traits(static_cast<uint32_t>(type))->supported);
    }
    // Types without a reader stay refused, naming the type.
    EXPECT_FALSE(cpu::supported_matrix_type(GgmlType::Q8_K));
    std::vector<float> out(256);
    const std::vector<uint8_t> block(292);
    try {
        dequantize_row(GgmlType::Q8_K, block.data(), out.data(), 256);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("q8_K"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace dendro
