// The fused CUDA decode step (dt_proj + softplus + state update + D skip + SiLU gate) against the CPU
// backend's scan of one token per sequence, for every dt_proj weight type, batches of 1 to 16 sequences
// scattered over state slots, d_state 4 and 16, odd channel counts (one and seven channel blocks) and dt_rank
// on both sides of 32.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <cmath>
#include <random>
#include <vector>

#include "cpu/ops.h"
#include "runtime/cuda_check.h"
#include "runtime/device_buffer.h"
#include "common/error.h"
#include "weights/device_model.h"
#include "format/ggml_types.h"
#include "mamba1/ssm_decode.h"

namespace dendro::cuda {
namespace {

using SsmDecode = CudaStreamTest<::testing::TestWithParam<GgmlType>>;

TEST_P(SsmDecode, MatchesOneStepOfTheReferenceScan) {
    const GgmlType type = GetParam();
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto random = [&](size_t n, float mean = 0.0f, float scale = 1.0f) {
        std::vector<float> v(n);
        for (float& x : v) x = mean + scale * normal(rng);
        return v;
    };
    // dt_rank 5: element-wise dt_proj rows; 40 (64 for Q8_0) with 200 channels: 16-byte vector rows, dt_rank
    // above one warp's width and seven channel blocks; 32 for Q8_0: one block of quants a row.
    struct Shape {
        int64_t dt_rank, d_inner;
    };
    const bool q8 = type == GgmlType::Q8_0;
    for (const Shape shape : {Shape{q8 ? 32 : 5, 37}, Shape{q8 ? 64 : 40, 200}}) {
        const int64_t dt_rank = shape.dt_rank;
        for (int64_t d_state : {4, 16}) {
            for (int n_batch : {1, 3, 16}) {
                const int64_t d_inner = shape.d_inner, n_slots = 20, row = dt_rank + 2 * d_state;
                // dt_proj weights in the tested type; the reference uses their dequantized values.
                std::vector<float> w = random(d_inner * dt_rank, 0.0f, 0.3f);
                const size_t row_bytes = ggml_row_size(type, dt_rank);
                std::vector<uint8_t> w_bytes(row_bytes * d_inner);
                for (int64_t c = 0; c < d_inner; ++c) {
                    quantize_row(type, w.data() + c * dt_rank, w_bytes.data() + c * row_bytes, dt_rank);
                    dequantize_row(type, w_bytes.data() + c * row_bytes, w.data() + c * dt_rank, dt_rank);
                }
                TensorView view;
                view.name = "dt_proj.weight";
                view.type = type;
                view.ne = {dt_rank, d_inner, 1, 1};
                view.data = w_bytes.data();
                view.nbytes = w_bytes.size();
                std::vector<DeviceBuffer> storage;
                const DeviceMatrix w_d = upload_matrix(view, storage);

                auto x_dbl = random(n_batch * row), dt_bias = random(d_inner, -3.0f, 0.5f);
                auto A = random(d_inner * d_state);
                for (float& a : A) a = -std::exp(a);
                auto D = random(d_inner), u = random(n_batch * d_inner), z = random(n_batch * 2 * d_inner);
                const int64_t slot_stride = d_inner * d_state;
                auto states = random(n_slots * slot_stride);
                std::vector<int32_t> slots;
                for (int b = 0; b < n_batch; ++b) slots.push_back(static_cast<int32_t>((7 * b + 3) % n_slots));

                auto up = [](const auto& v, const char* what) {
                    return upload(v.data(), v.size() * sizeof(v[0]), what);
                };
                const DeviceBuffer x_dbl_d = up(x_dbl, "x_dbl"), dt_bias_d = up(dt_bias, "dt_bias"), A_d = up(A, "A");
                const DeviceBuffer D_d = up(D, "D"), u_d = up(u, "u"), z_d = up(z, "z"), slots_d = up(slots, "slots");
                DeviceBuffer states_d = up(states, "states");
                DeviceBuffer y_d(n_batch * d_inner * sizeof(float), "y");
                SsmDecodeParams p;
                p.n_batch = n_batch;
                p.d_inner = d_inner;
                p.d_state = d_state;
                p.dt_rank = dt_rank;
                p.x_dbl = x_dbl_d.as<float>();
                p.x_dbl_stride = row;
                p.dt_weight = w_d;
                p.dt_bias = dt_bias_d.as<float>();
                p.A = A_d.as<float>();
                p.D = D_d.as<float>();
                p.u = u_d.as<float>();
                p.u_stride = d_inner;
                p.z = z_d.as<float>() + d_inner;  // the gate half of in_proj's output
                p.z_stride = 2 * d_inner;
                p.states = states_d.as<float>();
                p.slot_stride = slot_stride;
                p.slots = slots_d.as<int32_t>();
                p.y = y_d.as<float>();
                p.y_stride = d_inner;
                launch_ssm_decode(p, stream_);
                check(cudaStreamSynchronize(stream_), "ssm decode");
                std::vector<float> y(n_batch * d_inner), states_out(states.size());
                download(y_d.get(), y.data(), y.size() * sizeof(float), "y");
                download(states_d.get(), states_out.data(), states_out.size() * sizeof(float), "states");

                std::vector<float> expected_y(y.size()), expected_states(states);
                for (int b = 0; b < n_batch; ++b) {
                    for (int64_t c = 0; c < d_inner; ++c) {
                        double dt_proj = 0.0;
                        for (int64_t k = 0; k < dt_rank; ++k) {
                            dt_proj += static_cast<double>(w[c * dt_rank + k]) * x_dbl[b * row + k];
                        }
                        const float dt_value = static_cast<float>(dt_proj);
                        const float* bc = x_dbl.data() + b * row + dt_rank;
                        const cpu::ScanChannelInputs in{{&dt_value, 1}, {u.data() + b * d_inner + c, 1},
                                                        {z.data() + b * 2 * d_inner + d_inner + c, 1}, {bc, 0},
                                                        {bc + d_state, 0}};
                        cpu::scan_channel(in, A.data() + c * d_state, D[c], dt_bias[c], d_state,
                                          expected_states.data() + slots[b] * slot_stride + c * d_state,
                                          {expected_y.data() + b * d_inner + c, 1}, 1);
                    }
                }
                const std::string what = concat(ggml_type_name(type), " dt_rank ", dt_rank, " d_inner ", d_inner,
                                                " d_state ", d_state, " batch ", n_batch);
                for (size_t i = 0; i < y.size(); ++i) {
                    ASSERT_NEAR(y[i], expected_y[i], 1e-4f * (1.0f + std::fabs(expected_y[i]))) << what << " y " << i;
                }
                for (size_t i = 0; i < states.size(); ++i) {
                    ASSERT_NEAR(states_out[i], expected_states[i], 1e-4f * (1.0f + std::fabs(expected_states[i])))
                        << what << " state element " << i;
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, SsmDecode,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0),
                         [](const auto& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace dendro::cuda

#else

TEST(SsmDecode, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
