// ggml's legacy quants and k-quants as Dendro reads them: dequantize_row against gguf-py's numpy
// dequantizer (tests/data/quant, made by tools/make_quant_fixtures.py), the CPU matmul (8-bit activations,
// integer dots) against the dequantized rows, and models mixing these types loaded and run on the CPU backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/matmul.h"
#include "cpu/quantized_activations.h"
#include "cpu/thread_pool.h"
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

// A rows x row_length matrix of `type` over bytes (named for the failure messages).
TensorView random_matrix(GgmlType type, const std::vector<uint8_t>& bytes, int64_t row_length, int64_t rows) {
    TensorView w;
    w.name = "random." + ggml_type_name(type);
    w.type = type;
    w.ne = {row_length, rows, 1, 1};
    w.data = bytes.data();
    w.nbytes = bytes.size();
    return w;
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

// The token vectors as the integer matmul sees them: each block of 32 (256 for the k-quants) quantized to
// int8 by the library's activation quantizer, then dequantized here in double.
std::vector<double> quantized_activations(GgmlType type, const std::vector<float>& x, int64_t row_length) {
    std::vector<double> values(x.size());
    const auto dequantize = [&](const auto& blocks, int64_t block_size, int64_t t) {
        for (size_t b = 0; b < blocks.size(); ++b) {
            for (int64_t i = 0; i < block_size; ++i) {
                values[t * row_length + b * block_size + i] = static_cast<double>(blocks[b].d) * blocks[b].q[i];
            }
        }
    };
    const int64_t n_tokens = static_cast<int64_t>(x.size()) / row_length;
    for (int64_t t = 0; t < n_tokens; ++t) {
        if (ggml_type_traits(static_cast<uint32_t>(type))->block_size == kKQuantBlockSize) {
            std::vector<cpu::ActivationBlock256> blocks(row_length / kKQuantBlockSize);
            cpu::quantize_activations(x.data() + t * row_length, row_length, blocks.data());
            dequantize(blocks, kKQuantBlockSize, t);
        } else {
            std::vector<cpu::ActivationBlock32> blocks(row_length / kLegacyQuantBlockSize);
            cpu::quantize_activations(x.data() + t * row_length, row_length, blocks.data());
            dequantize(blocks, kLegacyQuantBlockSize, t);
        }
    }
    return values;
}

// The integer path's rounding: the block scales' fp32 products, the int32 sums' conversion to fp32 and the
// fp32 sum over blocks, relative to the sum of the products' magnitudes.
constexpr double kIntegerPathRelativeError = 1e-5;

// Checks each output against two double-precision dot products of the dequantized row: with the quantized
// activations, which the output must match up to fp32 rounding; and with the fp32 activations, which it
// must match up to the activations' rounding, at most half a quantization step d / 2 per element (d = the
// block's max |x| / 127), times |w|.
void expect_rows_match_dequantized(const TensorView& w, const std::vector<float>& x, int64_t n_tokens,
                                   const std::vector<float>& y) {
    const std::vector<float> values = dequantized(w);
    const std::vector<double> xq = quantized_activations(w.type, x, w.row_length());
    const int64_t n = w.row_length();
    const int64_t block_size = ggml_type_traits(static_cast<uint32_t>(w.type))->block_size == kKQuantBlockSize
                                   ? kKQuantBlockSize
                                   : kLegacyQuantBlockSize;
    for (int64_t t = 0; t < n_tokens; ++t) {
        std::vector<double> half_step(static_cast<size_t>(n / block_size));
        for (int64_t i = 0; i < n; ++i) {
            double& h = half_step[i / block_size];
            h = std::max(h, std::fabs(static_cast<double>(x[t * n + i])) / cpu::kActivationMax / 2);
        }
        for (int64_t r = 0; r < w.n_rows(); ++r) {
            const float* row = values.data() + r * n;
            double exact_q = 0, magnitude_q = 0, exact = 0, step_bound = 0;
            for (int64_t i = 0; i < n; ++i) {
                exact_q += row[i] * xq[t * n + i];
                magnitude_q += std::fabs(row[i] * xq[t * n + i]);
                exact += static_cast<double>(row[i]) * x[t * n + i];
                step_bound += std::fabs(static_cast<double>(row[i])) * half_step[i / block_size];
            }
            const float got = y[t * w.n_rows() + r];
            ASSERT_LE(std::fabs(got - exact_q), kIntegerPathRelativeError * magnitude_q + 1e-30)
                << w.name << " row " << r << " token " << t;
            ASSERT_LE(std::fabs(got - exact), step_bound * (1 + 1e-6) + kIntegerPathRelativeError * magnitude_q + 1e-30)
                << w.name << " row " << r << " token " << t;
        }
    }
}

// Random tokens; token 0 is all +-1, so that every activation quantizes to +-127 (the largest int16 pair
// sums the integer dots form).
std::vector<float> test_tokens(int64_t n_tokens, int64_t row_length, uint64_t seed) {
    std::vector<float> x = random_values(static_cast<size_t>(n_tokens * row_length), seed);
    for (int64_t i = 0; i < row_length; ++i) x[i] = x[i] < 0 ? -1.0f : 1.0f;
    return x;
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
        const std::vector<float> x = test_tokens(n_tokens, w.row_length(), 7);
        expect_rows_match_dequantized(w, x, n_tokens, product(w, x, n_tokens, {{0, w.n_rows()}}));
    }
}

// 45 rows of 512 elements of the given blocks: every tile shape (8 rows when decoding; in batches 4 x 3, or
// with the rows in the lanes under VNNI 8 rows x 8 tokens, 16 x 8 for Q4_K and Q5_K; the short tiles at the
// end) and any split of the rows among threads give the same outputs.
constexpr int64_t kRandomRowLength = 512, kRandomRows = 45;

void expect_matmul_independent_of_tiling(GgmlType type, const std::vector<uint8_t>& bytes) {
    const int64_t row_length = kRandomRowLength, rows = kRandomRows;
    const TensorView w = random_matrix(type, bytes, row_length, rows);

    const int64_t n_tokens = 11;  // a whole tile of 8 tokens and a short one, or 3 of 3 tokens and one of 2
    const std::vector<float> x = test_tokens(n_tokens, row_length, 3);
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

TEST_P(QuantFixture, MatmulDoesNotDependOnTilingOrRowShares) {
    const GgmlType type = GetParam();
    const int64_t blocks = kRandomRowLength * kRandomRows / ggml_type_traits(static_cast<uint32_t>(type))->block_size;
    expect_matmul_independent_of_tiling(type, test::random_quant_blocks(type, blocks, 11, 0.5f));
}

// A NaN or an infinite input makes every output NaN, as the fp32 products would (rather than being rounded
// to some finite 8-bit value).
TEST_P(QuantFixture, NonFiniteInputGivesNaN) {
    const GgmlType type = GetParam();
    const int64_t rows = 9;
    const std::vector<uint8_t> bytes = test::random_quant_blocks(
        type, kRandomRowLength * rows / ggml_type_traits(static_cast<uint32_t>(type))->block_size, 13, 0.5f);
    const TensorView w = random_matrix(type, bytes, kRandomRowLength, rows);
    for (const float bad : {NAN, INFINITY, -INFINITY}) {
        std::vector<float> x = random_values(kRandomRowLength, 4);
        x[kRandomRowLength / 2 + 3] = bad;
        for (const float y : product(w, x, 1, {{0, rows}})) ASSERT_TRUE(std::isnan(y)) << bad;
    }
}

// Q8_0 (written by Dendro's quantizer, so not in the read-only types' fixture): quantized random rows, and
// every 5th quant set to -128, which the quantizer never writes but a file may hold (the sign trick takes
// |-128| as the unsigned 128).
TEST(Q8_0Matmul, MatchesDequantizedRowsWhateverTheTiling) {
    const std::vector<float> values = random_values(static_cast<size_t>(kRandomRowLength * kRandomRows), 5);
    std::vector<uint8_t> bytes(static_cast<size_t>(kRandomRows * kRandomRowLength / kQ8_0BlockSize) * sizeof(BlockQ8_0));
    quantize_row(GgmlType::Q8_0, values.data(), bytes.data(), kRandomRowLength * kRandomRows);
    auto* blocks = reinterpret_cast<BlockQ8_0*>(bytes.data());
    constexpr int kEvery = 5;
    for (size_t b = 0; b < bytes.size() / sizeof(BlockQ8_0); ++b) {
        for (int64_t i = 0; i < kQ8_0BlockSize; i += kEvery) blocks[b].qs[i] = -128;
    }
    expect_matmul_independent_of_tiling(GgmlType::Q8_0, bytes);
}

// The float types likewise: each output is the same bit for bit whatever tile (8 rows, fewer, one), row
// share or batch it falls in, and close to the double-precision product; rows whose length is not a whole
// number of 8-element chunks too (the tiles' tail).
TEST(FloatMatmul, DoesNotDependOnTilingOrRowShares) {
    for (const int64_t n : {kRandomRowLength, kRandomRowLength + 5}) {
        const int64_t rows = kRandomRows, n_tokens = 11;
        const std::vector<float> values = random_values(static_cast<size_t>(n * rows), 6);
        const std::vector<float> x = random_values(static_cast<size_t>(n * n_tokens), 7);
        for (const GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
            SCOPED_TRACE(std::string(ggml_type_name(type)) + " length " + std::to_string(n));
            std::vector<uint8_t> bytes(ggml_row_size(type, n) * rows);
            quantize_row(type, values.data(), bytes.data(), n * rows);
            const TensorView w = random_matrix(type, bytes, n, rows);
            const std::vector<float> batch = product(w, x, n_tokens, {{0, rows}});
            const std::vector<float> shared = product(w, x, n_tokens, {{0, 8}, {8, 16}, {16, 40}, {40, rows}});
            EXPECT_EQ(0, std::memcmp(batch.data(), shared.data(), batch.size() * sizeof(float)));
            // Rows one at a time: every output from a one-row tile.
            std::vector<cpu::Range> single_rows;
            for (int64_t r = 0; r < rows; ++r) single_rows.push_back({r, r + 1});
            const std::vector<float> one_by_one = product(w, x, n_tokens, single_rows);
            EXPECT_EQ(0, std::memcmp(batch.data(), one_by_one.data(), batch.size() * sizeof(float)));
            const std::vector<float> stored = dequantized(w);
            for (int64_t t = 0; t < n_tokens; ++t) {
                const std::vector<float> token(x.begin() + t * n, x.begin() + (t + 1) * n);
                const std::vector<float> alone = product(w, token, 1, {{0, rows}});
                ASSERT_EQ(0, std::memcmp(alone.data(), batch.data() + t * rows, rows * sizeof(float))) << "token " << t;
                for (int64_t r = 0; r < rows; ++r) {
                    double exact = 0, magnitude = 0;
                    for (int64_t i = 0; i < n; ++i) {
                        exact += static_cast<double>(stored[r * n + i]) * x[t * n + i];
                        magnitude += std::fabs(static_cast<double>(stored[r * n + i]) * x[t * n + i]);
                    }
                    ASSERT_NEAR(batch[t * rows + r], exact, 1e-6 * magnitude) << "token " << t << " row " << r;
                }
            }
        }
    }
}

// matmul_team_rows: the team's product is the same bit for bit as one thread's over all the rows, for a
// decode step, a small batch (both with claimed chunks) and a batch of several token blocks (fixed shares),
// and after() sees every row once, in chunks of whole tiles; two products in one task, a barrier between
// (two claim sections), each complete.
TEST(TeamMatmul, MatchesOneThreadAndHandsEveryRowOnce) {
    constexpr int64_t kLength = 512, kRows = 1001;  // several chunks of 128 KiB; a short tile at the end
    const std::vector<float> values = random_values(static_cast<size_t>(kLength * kRows), 12);
    ThreadPool pool(3);
    for (const GgmlType type : {GgmlType::F32, GgmlType::Q4_K, GgmlType::Q6_K}) {
        std::vector<uint8_t> bytes(ggml_row_size(type, kLength) * kRows);
        quantize_row(type, values.data(), bytes.data(), kLength * kRows);
        const TensorView w = random_matrix(type, bytes, kLength, kRows);
        for (const int64_t n_tokens : {1, 5, 60}) {
            SCOPED_TRACE(ggml_type_name(type) + " x " + std::to_string(n_tokens) + " tokens");
            const std::vector<float> x = random_values(static_cast<size_t>(kLength * n_tokens), 13);
            const std::vector<float> expected = product(w, x, n_tokens, {{0, kRows}});
            std::vector<std::vector<float>> y(2, std::vector<float>(expected.size(), NAN));
            std::vector<std::vector<int>> visits(2, std::vector<int>(kRows, 0));
            std::mutex visits_mutex;
            bool misaligned = false;
            pool.run([&](int thread, int n_threads) {
                const cpu::Team team{pool, thread, n_threads};
                for (size_t product_index = 0; product_index < 2; ++product_index) {
                    cpu::matmul_team_rows(w, {x.data(), kLength}, n_tokens, {y[product_index].data(), kRows}, team,
                                          [&](cpu::Range rows) {
                                              const std::lock_guard lock(visits_mutex);
                                              if (rows.begin % cpu::kShareAlignment != 0) misaligned = true;
                                              for (int64_t r = rows.begin; r < rows.end; ++r) ++visits[product_index][r];
                                          });
                    pool.barrier();
                }
            });
            EXPECT_FALSE(misaligned);
            for (size_t product_index = 0; product_index < 2; ++product_index) {
                EXPECT_EQ(0, std::memcmp(expected.data(), y[product_index].data(), expected.size() * sizeof(float)));
                for (int64_t r = 0; r < kRows; ++r) ASSERT_EQ(visits[product_index][r], 1) << "row " << r;
            }
        }
    }
}

// Fixed shares (a batch of several token blocks) of a product in equal parts: each thread takes a share of
// each part (Mamba-1's x and z halves of in_proj), the product unchanged.
TEST(TeamMatmul, FixedSharesTakeAShareOfEachPart) {
    constexpr int64_t kLength = 256, kRows = 1000, kTokens = 60, kParts = 2;
    const std::vector<float> values = random_values(static_cast<size_t>(kLength * kRows), 14);
    const std::vector<float> x = random_values(static_cast<size_t>(kLength * kTokens), 15);
    std::vector<uint8_t> bytes(ggml_row_size(GgmlType::F32, kLength) * kRows);
    quantize_row(GgmlType::F32, values.data(), bytes.data(), kLength * kRows);
    const TensorView w = random_matrix(GgmlType::F32, bytes, kLength, kRows);
    const std::vector<float> expected = product(w, x, kTokens, {{0, kRows}});
    ThreadPool pool(2);
    std::vector<float> y(expected.size(), NAN);
    std::mutex ranges_mutex;
    std::vector<std::vector<cpu::Range>> ranges(2);
    int team = 0;
    pool.run([&](int thread, int n_threads) {
        if (thread == 0) team = n_threads;
        cpu::matmul_team_rows(w, {x.data(), kLength}, kTokens, {y.data(), kRows}, cpu::Team{pool, thread, n_threads},
                              [&](cpu::Range rows) {
                                  const std::lock_guard lock(ranges_mutex);
                                  ranges[static_cast<size_t>(thread)].push_back(rows);
                              }, kParts);
    });
    EXPECT_EQ(0, std::memcmp(expected.data(), y.data(), expected.size() * sizeof(float)));
    for (int thread = 0; thread < team; ++thread) {
        const std::vector<cpu::Range>& got = ranges[static_cast<size_t>(thread)];
        ASSERT_EQ(got.size(), static_cast<size_t>(kParts)) << "thread " << thread;
        for (int64_t part = 0; part < kParts; ++part) {
            EXPECT_GE(got[part].begin, part * kRows / kParts);
            EXPECT_LE(got[part].end, (part + 1) * kRows / kParts);
        }
    }
}

// The activation quantizer: d = max |x| / 127 per block, each q within half a step of x / d, and the block
// sums the blocks of 32 (whole and scaled, for Q4_1/Q5_1) and the k-quants (per 16) use.
TEST(ActivationQuantization, RoundsEachBlockToItsOwnScale) {
    std::vector<float> x = random_values(2 * kKQuantBlockSize, 9);
    x[3] = 7.0f;                                             // a block whose max is far from the others'
    std::fill(x.begin() + 64, x.begin() + 96, 0.0f);         // an all-zero block of 32
    std::vector<cpu::ActivationBlock32> small(x.size() / kLegacyQuantBlockSize);
    cpu::quantize_activations(x.data(), static_cast<int64_t>(x.size()), small.data());
    std::vector<cpu::ActivationBlock256> large(x.size() / kKQuantBlockSize);
    cpu::quantize_activations(x.data(), static_cast<int64_t>(x.size()), large.data());
    const auto check = [&](const float* values, int64_t n, float d, const int8_t* q) {
        float amax = 0;
        for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(values[i]));
        EXPECT_EQ(d, amax / cpu::kActivationMax);
        for (int64_t i = 0; i < n; ++i) {
            EXPECT_LE(std::abs(q[i]), cpu::kActivationMax);
            EXPECT_LE(std::fabs(values[i] - static_cast<double>(d) * q[i]), d / 2.0 * (1 + 1e-6)) << i;
        }
    };
    for (size_t b = 0; b < small.size(); ++b) {
        const float* values = x.data() + b * kLegacyQuantBlockSize;
        check(values, kLegacyQuantBlockSize, small[b].d, small[b].q);
        int sum = 0;
        for (const int8_t q : small[b].q) sum += q;
        EXPECT_EQ(small[b].sum, sum);
        EXPECT_EQ(small[b].scaled_sum, small[b].d * static_cast<float>(sum));
    }
    EXPECT_EQ(small[2].d, 0.0f);
    for (size_t b = 0; b < large.size(); ++b) {
        check(x.data() + b * kKQuantBlockSize, kKQuantBlockSize, large[b].d, large[b].q);
        for (int64_t s = 0; s < kKQuantBlockSize / cpu::kSubBlockSize; ++s) {
            int sum = 0;
            for (int64_t i = 0; i < cpu::kSubBlockSize; ++i) sum += large[b].q[s * cpu::kSubBlockSize + i];
            EXPECT_EQ(large[b].sums[s], sum) << "block " << b << " sub-block " << s;
        }
        for (int64_t s = 0; s < kKQuantBlockSize / kLegacyQuantBlockSize; ++s) {
            int sum = 0;
            for (int64_t i = 0; i < kLegacyQuantBlockSize; ++i) sum += large[b].q[s * kLegacyQuantBlockSize + i];
            EXPECT_EQ(large[b].sums32[s], sum) << "block " << b << " sub-block of 32 " << s;
        }
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
