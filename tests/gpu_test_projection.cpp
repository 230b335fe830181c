// The CUDA projections (decode GEMV up to 16 rows, cuBLAS GEMM above), the GEMV's residual and folded-norm
// fusions, and the embedding gather against fp64 reference loops over the same (quantized) weights, for every
// weight type and awkward shapes.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "runtime/cuda_check.h"
#include "runtime/device_buffer.h"
#include "common/error.h"
#include "weights/device_model.h"
#include "ops/embedding.h"
#include "linear/gemm.h"
#include "linear/gemv.h"
#include "format/ggml_types.h"
#include "linear/projection.h"

namespace dendro::cuda {
namespace {

struct HostMatrix {
    std::vector<uint8_t> bytes;  // ggml layout
    std::vector<float> values;   // the dequantized weights the device must use
    TensorView view;
};

HostMatrix make_matrix(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    HostMatrix m;
    const size_t row_bytes = ggml_row_size(type, cols);
    m.bytes.resize(row_bytes * rows);
    m.values.resize(static_cast<size_t>(rows * cols));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
        for (float& v : row) v = dist(rng);
        quantize_row(type, row.data(), m.bytes.data() + r * row_bytes, cols);
        dequantize_row(type, m.bytes.data() + r * row_bytes, m.values.data() + r * cols, cols);
    }
    m.view.name = "test.weight";
    m.view.type = type;
    m.view.ne = {cols, rows, 1, 1};
    m.view.data = m.bytes.data();
    m.view.nbytes = m.bytes.size();
    return m;
}

// Relative rounding the path may add per product: fp32 for GEMV and F32 GEMMs, the activations' 16-bit
// rounding for F16/Q8_0 (fp16) and BF16 GEMMs.
double product_tolerance(GgmlType type, int64_t n) {
    if (n <= kMaxGemvBatch || type == GgmlType::F32) return 1e-5;
    return type == GgmlType::BF16 ? 1.0 / 128.0 : 1.0 / 1024.0;
}

using Projection = CudaStreamTest<::testing::TestWithParam<GgmlType>>;

TEST_P(Projection, MatchesReferenceForEveryBatchAndShape) {
    const GgmlType type = GetParam();
    const bool q8 = type == GgmlType::Q8_0;
    struct Shape {
        int64_t rows, cols;
    };
    std::vector<Shape> shapes = {{1, 32}, {37, 64}, {300, 768}, {130, 160}};
    if (!q8) shapes.push_back({37, 33});  // rows not 16-byte aligned: the element-wise path
    std::mt19937 rng(7);
    Gemm gemm(stream_);
    for (const Shape& shape : shapes) {
        HostMatrix host = make_matrix(type, shape.rows, shape.cols, rng);
        std::vector<DeviceBuffer> storage;
        const DeviceMatrix w = upload_matrix(host.view, storage);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        std::vector<float> bias(static_cast<size_t>(shape.rows));
        for (float& b : bias) b = dist(rng);
        const DeviceBuffer bias_d = upload(bias.data(), bias.size() * sizeof(float), "bias");
        for (int64_t n : {1, 2, 3, 5, 8, 13, 16, 17, 64}) {
            for (int64_t pad : {0, 3}) {  // x rows exactly cols apart, and further apart (unaligned for vectors)
                const int64_t x_stride = shape.cols + pad;
                std::vector<float> x(static_cast<size_t>(n * x_stride));
                for (float& v : x) v = dist(rng);
                const bool with_bias = pad == 0;
                const DeviceBuffer x_d = upload(x.data(), x.size() * sizeof(float), "x");
                DeviceBuffer y_d(static_cast<size_t>(n * shape.rows) * sizeof(float), "y");
                project(w, with_bias ? bias_d.as<float>() : nullptr, x_d.as<float>(), x_stride, n, y_d.as<float>(),
                        shape.rows, gemm, stream_);
                check(cudaStreamSynchronize(stream_), "projection");
                std::vector<float> y(static_cast<size_t>(n * shape.rows));
                download(y_d.get(), y.data(), y.size() * sizeof(float), "y");
                for (int64_t b = 0; b < n; ++b) {
                    for (int64_t r = 0; r < shape.rows; ++r) {
                        double sum = with_bias ? bias[r] : 0.0, magnitude = 0.0;
                        for (int64_t k = 0; k < shape.cols; ++k) {
                            const double p = static_cast<double>(host.values[r * shape.cols + k]) * x[b * x_stride + k];
                            sum += p;
                            magnitude += std::fabs(p);
                        }
                        const double tolerance = product_tolerance(type, n) * magnitude + 1e-4;
                        ASSERT_NEAR(y[b * shape.rows + r], sum, tolerance)
                            << ggml_type_name(type) << " " << shape.rows << "x" << shape.cols << " n=" << n
                            << " stride=" << x_stride << " row " << r << " batch row " << b;
                    }
                }
            }
        }
    }
}

// The GEMV fusions of decode (gemv.h): out_proj adding into the residual stream and leaving per-block sums
// of squares, then in_proj normalising the stream as it loads it, against an fp64 residual add + RMSNorm +
// projection; vector and element-wise rows, one and several blocks, batches 1, 3 and 16.
TEST_P(Projection, ResidualGemvThenFoldedNormGemvMatchReference) {
    const GgmlType type = GetParam();
    const bool q8 = type == GgmlType::Q8_0;
    constexpr float kEps = 1e-5f;
    struct Shape {
        int64_t d, k_in, m;  // residual width, out_proj inputs, in_proj outputs
    };
    const std::vector<Shape> shapes = q8 ? std::vector<Shape>{{64, 32, 45}, {768, 160, 33}}
                                         : std::vector<Shape>{{37, 33, 45}, {300, 160, 33}, {768, 64, 7}};
    std::mt19937 rng(8);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    auto random = [&](size_t n) {
        std::vector<float> v(n);
        for (float& x : v) x = dist(rng);
        return v;
    };
    auto up = [](const std::vector<float>& v, const char* what) { return upload(v.data(), v.size() * 4, what); };
    for (const Shape& shape : shapes) {
        HostMatrix out_proj = make_matrix(type, shape.d, shape.k_in, rng);
        HostMatrix in_proj = make_matrix(type, shape.m, shape.d, rng);
        std::vector<DeviceBuffer> storage;
        const DeviceMatrix w_out = upload_matrix(out_proj.view, storage), w_in = upload_matrix(in_proj.view, storage);
        for (const int n : {1, 3, 16}) {
            const auto h = random(n * shape.d), x = random(n * shape.k_in), b_out = random(shape.d);
            const auto g = random(shape.d), b_in = random(shape.m);
            const DeviceBuffer x_d = up(x, "x"), b_out_d = up(b_out, "out bias"), g_d = up(g, "norm weight");
            const DeviceBuffer b_in_d = up(b_in, "in bias");
            DeviceBuffer h_d = up(h, "h"), y_d(n * shape.m * sizeof(float), "y");
            DeviceBuffer squares_d(gemv_blocks(shape.d, n) * n * sizeof(float), "sums of squares");
            GemvFusion residual;
            residual.residual = true;
            residual.residual_squares = squares_d.as<float>();
            launch_gemv(w_out, b_out_d.as<float>(), x_d.as<float>(), shape.k_in, n, h_d.as<float>(), shape.d, stream_,
                        residual);
            GemvFusion norm;
            norm.norm_weight = g_d.as<float>();
            norm.square_partials = squares_d.as<float>();
            norm.n_square_partials = gemv_blocks(shape.d, n);
            norm.eps = kEps;
            launch_gemv(w_in, b_in_d.as<float>(), h_d.as<float>(), shape.d, n, y_d.as<float>(), shape.m, stream_,
                        norm);
            check(cudaStreamSynchronize(stream_), "fused GEMVs");
            std::vector<float> h_out(h.size()), y(n * shape.m);
            download(h_d.get(), h_out.data(), h_out.size() * sizeof(float), "h");
            download(y_d.get(), y.data(), y.size() * sizeof(float), "y");
            const std::string what = concat(ggml_type_name(type), " d ", shape.d, " n ", n);
            for (int b = 0; b < n; ++b) {
                std::vector<double> stream(shape.d);
                double sum_sq = 0.0;
                for (int64_t r = 0; r < shape.d; ++r) {
                    double sum = b_out[r];
                    for (int64_t k = 0; k < shape.k_in; ++k) {
                        sum += static_cast<double>(out_proj.values[r * shape.k_in + k]) * x[b * shape.k_in + k];
                    }
                    stream[r] = h[b * shape.d + r] + sum;
                    sum_sq += stream[r] * stream[r];
                    ASSERT_NEAR(h_out[b * shape.d + r], stream[r], 1e-4 * (1.0 + std::fabs(stream[r])))
                        << what << " residual row " << r << " batch row " << b;
                }
                const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(shape.d) + kEps);
                for (int64_t r = 0; r < shape.m; ++r) {
                    double sum = b_in[r], magnitude = std::fabs(b_in[r]);
                    for (int64_t k = 0; k < shape.d; ++k) {
                        const double normed = stream[k] * inv_rms * g[k];
                        const double p = static_cast<double>(in_proj.values[r * shape.d + k]) * normed;
                        sum += p;
                        magnitude += std::fabs(p);
                    }
                    ASSERT_NEAR(y[b * shape.m + r], sum, 1e-4 * magnitude + 1e-4)
                        << what << " normed output row " << r << " batch row " << b;
                }
            }
        }
    }
}

TEST_P(Projection, EmbeddingGatherCopiesRows) {
    const GgmlType type = GetParam();
    std::mt19937 rng(11);
    const int64_t n_vocab = 50, d_model = type == GgmlType::Q8_0 ? 96 : 37;
    HostMatrix host = make_matrix(type, n_vocab, d_model, rng);
    std::vector<DeviceBuffer> storage;
    const DeviceMatrix embd = upload_matrix(host.view, storage);
    const std::vector<int32_t> tokens = {0, 49, 7, 7, 23};
    const DeviceBuffer tokens_d = upload(tokens.data(), tokens.size() * sizeof(int32_t), "tokens");
    DeviceBuffer out_d(tokens.size() * d_model * sizeof(float), "embeddings");
    launch_embedding_gather(embd, tokens_d.as<int32_t>(), static_cast<int64_t>(tokens.size()), out_d.as<float>(),
                            stream_);
    check(cudaStreamSynchronize(stream_), "embedding");
    std::vector<float> out(tokens.size() * d_model);
    download(out_d.get(), out.data(), out.size() * sizeof(float), "embeddings");
    for (size_t i = 0; i < tokens.size(); ++i) {
        for (int64_t k = 0; k < d_model; ++k) {
            ASSERT_EQ(out[i * d_model + k], host.values[tokens[i] * d_model + k]) << "token " << i << " element " << k;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, Projection,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0),
                         [](const auto& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace dendro::cuda

#else

TEST(Projection, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
