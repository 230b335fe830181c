// The CUDA projections (decode GEMV up to 16 rows, cuBLAS GEMM above) and the embedding gather against
// fp64 reference loops over the same (quantized) weights, for every weight type and awkward shapes.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <cmath>
#include <random>
#include <vector>

#include "cuda_check.h"
#include "device_buffer.h"
#include "common/error.h"
#include "device_model.h"
#include "embedding.h"
#include "gemm.h"
#include "gemv.h"
#include "format/ggml_types.h"
#include "projection.h"

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
