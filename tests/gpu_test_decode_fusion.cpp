// The fused decode kernels of the GEMV regime end to end: conv_x_proj (conv step + x_proj split over channel
// slices into partial rows) then the SSM decode summing those partials (with and without the Falcon-style
// dt/B/C norms), against the CPU backend's conv and scan and a double-precision x_proj, for every weight type,
// channel counts with a partial last slice and with several slices per block, dt_rank above 32, d_state 16, and
// batches of 1, 3 and 16 over scattered slots.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "ops/conv1d.h"
#include "mamba1/conv_x_proj.h"
#include "cpu/ops.h"
#include "runtime/cuda_check.h"
#include "runtime/device_buffer.h"
#include "weights/device_model.h"
#include "format/ggml_types.h"
#include "linear/gemv.h"
#include "mamba1/ssm_decode.h"

namespace dendro::cuda {
namespace {

constexpr float kTolerance = 1e-4f;
constexpr int64_t kDConv = 4, kDState = 16, kSlots = 20;
constexpr float kNormEps = 1e-6f;

struct Shape {
    int64_t d_inner, dt_rank;
};

// A matrix of `type` uploaded to the device, and its dequantised values (what the kernels must compute with).
struct TestMatrix {
    std::vector<float> values;
    std::vector<uint8_t> bytes;
    std::vector<DeviceBuffer> storage;
    DeviceMatrix device;
};

void make_matrix(GgmlType type, int64_t rows, int64_t cols, float scale, std::mt19937& rng, const char* name,
                 TestMatrix& m) {
    std::normal_distribution<float> normal(0.0f, scale);
    m.values.resize(rows * cols);
    for (float& v : m.values) v = normal(rng);
    const size_t row_bytes = ggml_row_size(type, cols);
    m.bytes.resize(row_bytes * rows);
    for (int64_t r = 0; r < rows; ++r) {
        quantize_row(type, m.values.data() + r * cols, m.bytes.data() + r * row_bytes, cols);
        dequantize_row(type, m.bytes.data() + r * row_bytes, m.values.data() + r * cols, cols);
    }
    TensorView view;
    view.name = name;
    view.type = type;
    view.ne = {cols, rows, 1, 1};
    view.data = m.bytes.data();
    view.nbytes = m.bytes.size();
    m.device = upload_matrix(view, m.storage);
}

using DecodeFusion = CudaStreamTest<::testing::TestWithParam<GgmlType>>;

TEST_P(DecodeFusion, ConvXProjThenSsmDecodeMatchCpuReference) {
    const GgmlType type = GetParam();
    const bool q8 = type == GgmlType::Q8_0;  // Q8_0 rows are whole 32-element blocks
    // 37/200: element-wise and vector rows with a partial last 64-channel slice; 1536 (the 130m shape): 24
    // slices, several per block at batch 16.
    const std::vector<Shape> shapes = q8 ? std::vector<Shape>{{96, 32}, {224, 64}, {1536, 64}}
                                         : std::vector<Shape>{{37, 5}, {200, 40}, {1536, 48}};
    std::mt19937 rng(21);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto random = [&](size_t n, float mean = 0.0f, float scale = 1.0f) {
        std::vector<float> v(n);
        for (float& x : v) x = mean + scale * normal(rng);
        return v;
    };
    auto up = [](const auto& v, const char* what) { return upload(v.data(), v.size() * sizeof(v[0]), what); };
    for (const Shape& shape : shapes) {
        for (const int n_batch : {1, 3, 16}) {
            for (const bool norm : {false, true}) {
                const int64_t d_inner = shape.d_inner, dt_rank = shape.dt_rank, width = dt_rank + 2 * kDState;
                const std::string what = concat(ggml_type_name(type), " d_inner ", d_inner, " dt_rank ", dt_rank,
                                                " batch ", n_batch, norm ? " normed" : "");
                TestMatrix x_proj, dt_proj;
                make_matrix(type, width, d_inner, 0.2f, rng, "x_proj.weight", x_proj);
                make_matrix(type, d_inner, dt_rank, 0.3f, rng, "dt_proj.weight", dt_proj);
                auto taps = random(d_inner * kDConv, 0.0f, 0.5f), conv_bias = random(d_inner);
                const int64_t window_stride = (kDConv - 1) * d_inner, state_stride = d_inner * kDState;
                auto windows = random(kSlots * window_stride), states = random(kSlots * state_stride);
                auto xz = random(n_batch * 2 * d_inner), dt_bias = random(d_inner, -3.0f, 0.5f);
                auto A = random(d_inner * kDState), D = random(d_inner);
                for (float& a : A) a = -std::exp(a);
                std::vector<int32_t> slots;
                for (int b = 0; b < n_batch; ++b) slots.push_back(static_cast<int32_t>((7 * b + 3) % kSlots));

                const DeviceBuffer taps_d = up(taps, "taps"), conv_bias_d = up(conv_bias, "conv bias");
                const DeviceBuffer xz_d = up(xz, "xz"), slots_d = up(slots, "slots"), A_d = up(A, "A");
                const DeviceBuffer dt_bias_d = up(dt_bias, "dt bias"), D_d = up(D, "D");
                DeviceBuffer windows_d = up(windows, "windows"), states_d = up(states, "states");
                DeviceBuffer u_d(n_batch * d_inner * sizeof(float), "u"), y_d(n_batch * d_inner * sizeof(float), "y");
                const int64_t partials = conv_x_proj_partials(d_inner, n_batch);
                ASSERT_LE(partials, conv_x_proj_max_partials(d_inner)) << what;
                DeviceBuffer partials_d(conv_x_proj_max_partials(d_inner) * kMaxGemvBatch * width * sizeof(float),
                                        "partials");

                ConvXProjParams c;
                c.n_batch = n_batch;
                c.conv = ConvWeights{d_inner, kDConv, taps_d.as<float>(), conv_bias_d.as<float>()};
                c.x = xz_d.as<float>();
                c.x_stride = 2 * d_inner;
                c.windows = windows_d.as<float>();
                c.slot_stride = window_stride;
                c.slots = slots_d.as<int32_t>();
                c.u = u_d.as<float>();
                c.u_stride = d_inner;
                c.x_proj = x_proj.device;
                c.partials = partials_d.as<float>();
                c.partial_stride = n_batch * width;
                launch_conv_x_proj(c, stream_);

                SsmDecodeParams p;
                p.n_batch = n_batch;
                p.d_inner = d_inner;
                p.d_state = kDState;
                p.dt_rank = dt_rank;
                p.x_dbl = partials_d.as<float>();
                p.x_dbl_stride = width;
                p.n_partials = static_cast<int>(partials);
                p.partial_stride = n_batch * width;
                p.norm_dt_b_c = norm;
                p.norm_eps = kNormEps;
                p.dt_weight = dt_proj.device;
                p.dt_bias = dt_bias_d.as<float>();
                p.A = A_d.as<float>();
                p.D = D_d.as<float>();
                p.u = u_d.as<float>();
                p.u_stride = d_inner;
                p.z = xz_d.as<float>() + d_inner;
                p.z_stride = 2 * d_inner;
                p.states = states_d.as<float>();
                p.slot_stride = state_stride;
                p.slots = slots_d.as<int32_t>();
                p.y = y_d.as<float>();
                p.y_stride = d_inner;
                launch_ssm_decode(p, stream_);
                check(cudaStreamSynchronize(stream_), "fused decode kernels");

                // The reference: CPU conv step, double-precision x_proj, segment norms, CPU scan step.
                std::vector<float> e_windows(windows), e_states(states), e_u(n_batch * d_inner), e_y(n_batch * d_inner);
                for (int b = 0; b < n_batch; ++b) {
                    for (int64_t ch = 0; ch < d_inner; ++ch) {
                        cpu::conv_silu_channel({taps.data() + ch * kDConv, 1}, kDConv, conv_bias[ch],
                                               {e_windows.data() + slots[b] * window_stride + ch, d_inner},
                                               {xz.data() + b * 2 * d_inner + ch, 2 * d_inner},
                                               {e_u.data() + b * d_inner + ch, d_inner}, 1);
                    }
                    std::vector<float> row(width);
                    for (int64_t r = 0; r < width; ++r) {
                        double sum = 0.0;
                        for (int64_t k = 0; k < d_inner; ++k) {
                            sum += static_cast<double>(x_proj.values[r * d_inner + k]) * e_u[b * d_inner + k];
                        }
                        row[r] = static_cast<float>(sum);
                    }
                    if (norm) {
                        for (const auto& [offset, n] : {std::pair<int64_t, int64_t>{0, dt_rank},
                                                        {dt_rank, kDState}, {dt_rank + kDState, kDState}}) {
                            float* segment = row.data() + offset;
                            double sum_sq = 0.0;
                            for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(segment[i]) * segment[i];
                            const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + kNormEps);
                            for (int64_t i = 0; i < n; ++i) segment[i] = static_cast<float>(segment[i] * scale);
                        }
                    }
                    for (int64_t ch = 0; ch < d_inner; ++ch) {
                        double dt_proj_sum = 0.0;
                        for (int64_t k = 0; k < dt_rank; ++k) {
                            dt_proj_sum += static_cast<double>(dt_proj.values[ch * dt_rank + k]) * row[k];
                        }
                        const float dt_value = static_cast<float>(dt_proj_sum);
                        const float* bc = row.data() + dt_rank;
                        const cpu::ScanChannelInputs in{{&dt_value, 1}, {e_u.data() + b * d_inner + ch, 1},
                                                        {xz.data() + b * 2 * d_inner + d_inner + ch, 1}, {bc, 0},
                                                        {bc + kDState, 0}};
                        cpu::scan_channel(in, A.data() + ch * kDState, D[ch], dt_bias[ch], kDState,
                                          e_states.data() + slots[b] * state_stride + ch * kDState,
                                          {e_y.data() + b * d_inner + ch, 1}, 1);
                    }
                }
                auto down = [](const DeviceBuffer& d, size_t n) {
                    std::vector<float> v(n);
                    download(d.get(), v.data(), n * sizeof(float), "test output");
                    return v;
                };
                expect_all_near(down(u_d, e_u.size()), e_u, kTolerance, what + ": conv outputs");
                expect_all_near(down(windows_d, windows.size()), e_windows, 0.0f, what + ": conv windows");
                // x_proj sums d_inner products in another order, and dt_proj and the state depend on it.
                const float loose = 1e-3f;
                expect_all_near(down(y_d, e_y.size()), e_y, loose, what + ": y");
                expect_all_near(down(states_d, states.size()), e_states, loose, what + ": states");
            }
        }
    }
}

// Host-side: how conv_x_proj splits the channels (runs without a GPU). Every batch gets at least one partial,
// no more than the buffer's bound, and no more partial rows than the SSM decode is meant to sum (128) unless one
// slice a partial is already the most there can be.
TEST(DecodeFusionPartition, PartialsStayWithinTheBufferAndTheStagingBound) {
    constexpr int64_t kStagingRows = 128;
    for (const int64_t d_inner : {1, 37, 64, 65, 200, 1536, 5120, 8192}) {
        const int64_t slices = (d_inner + kConvXProjSlice - 1) / kConvXProjSlice;
        EXPECT_EQ(conv_x_proj_max_partials(d_inner), slices) << "d_inner " << d_inner;
        for (int n_batch = 1; n_batch <= kMaxGemvBatch; ++n_batch) {
            const int64_t partials = conv_x_proj_partials(d_inner, n_batch);
            const std::string what = concat("d_inner ", d_inner, " batch ", n_batch);
            EXPECT_GE(partials, 1) << what;
            EXPECT_LE(partials, slices) << what;
            EXPECT_TRUE(partials * n_batch <= kStagingRows || partials == 1) << what << ": " << partials;
        }
        EXPECT_EQ(conv_x_proj_partials(d_inner, 1), std::min(slices, kStagingRows)) << "d_inner " << d_inner;
    }
}

// Host-side: the residual GEMV's block count, which its consumer must be told, never grows with the batch
// (the backend sizes the sums-of-squares buffer for batch 1 times kMaxGemvBatch).
TEST(DecodeFusionPartition, GemvBlocksShrinkAsTheBatchGrows) {
    for (const int64_t rows : {1, 37, 768, 2560, 50280}) {
        for (int n_batch = 2; n_batch <= kMaxGemvBatch; ++n_batch) {
            EXPECT_LE(gemv_blocks(rows, n_batch), gemv_blocks(rows, n_batch - 1)) << rows << " rows, batch " << n_batch;
            EXPECT_GE(gemv_blocks(rows, n_batch), 1);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, DecodeFusion,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0),
                         [](const auto& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace dendro::cuda

#else

TEST(DecodeFusion, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
