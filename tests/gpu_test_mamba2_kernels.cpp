// The Mamba-2 kernels (kernels/mamba2/) against a double-precision token loop written here from the SSD
// recurrence: the chunked SSD prefill (y and the final state, from a random start state) at head_dim
// 32/64/128 and odd ones, d_state 64/128 and odd ones, 1 and 8 groups, prompt lengths around the chunk and
// several chunks, chunks of 64 and 128, a binding time-step clamp; the fused decode step (state update,
// D skip, gate, grouped RMSNorm) for batches 1, 3 and 17 over scattered slots, twice in a row (its arrival
// counters must come back to zero); the prefill's gated norm.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/cuda_check.h"
#include "runtime/device_buffer.h"
#include "mamba2/gated_norm.h"
#include "mamba2/ssd_prefill.h"
#include "mamba2/ssm_decode_mamba2.h"
#include "reference_math.h"

namespace dendro::cuda {
namespace {

// The SSD's products take fp16 operands (11 significant bits) with fp32 accumulation: errors up to a few
// 2^-11 of the largest magnitude involved. A wrong index or a lost term moves values by O(1) of it.
constexpr double kSsdTolerance = 1e-2;
// The decode step and the gated norm are fp32 throughout.
constexpr double kFp32Tolerance = 1e-4;

struct Shape {
    int64_t head_dim, d_state, n_group, heads_per_group;
    std::string name() const {
        return concat("P", head_dim, "_N", d_state, "_G", n_group, "x", heads_per_group);
    }
    SsdShape ssd() const { return SsdShape{n_group * heads_per_group, head_dim, d_state, n_group}; }
};

std::vector<Shape> shapes() {
    return {{32, 128, 1, 2}, {64, 128, 1, 3}, {128, 128, 1, 2}, {64, 64, 8, 2}, {64, 128, 8, 1},
            {64, 48, 1, 2},  {128, 64, 8, 1}, {6, 5, 2, 2},     {40, 100, 1, 2}};
}

std::vector<float> random_vector(std::mt19937& rng, size_t n, double mean, double scale) {
    std::normal_distribution<double> normal(mean, scale);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(normal(rng));
    return v;
}

DeviceBuffer to_device(const std::vector<float>& v, const char* what) { return upload(v.data(), v.size() * sizeof(float), what); }

std::vector<float> from_device(const DeviceBuffer& d, size_t n, const char* what) {
    std::vector<float> v(n);
    download(d.get(), v.data(), n * sizeof(float), what);
    return v;
}

// Largest |actual - expected| relative to max(1, largest |expected|), naming the first element beyond `tolerance`.
void expect_close(const std::vector<float>& actual, const std::vector<double>& expected, double tolerance,
                  const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    double scale = 1.0;
    for (double e : expected) scale = std::max(scale, std::fabs(e));
    for (size_t i = 0; i < actual.size(); ++i) {
        ASSERT_TRUE(std::isfinite(actual[i])) << what << " element " << i;
        ASSERT_LE(std::fabs(actual[i] - expected[i]), tolerance * scale)
            << what << " element " << i << ": " << actual[i] << " vs " << expected[i];
    }
}

// One layer's SSD inputs in the backend's layout: rows of [x (d_inner), B, C (n_group*d_state each)] and rows
// of raw dt with a stride wider than n_head.
struct SsdInputs {
    Shape shape;
    int64_t n_tokens = 0, d_inner = 0, row = 0, dt_stride = 0;
    std::vector<float> xbc, dt, dt_bias, A, D, state;
    float t_min = 0.0f, t_max = std::numeric_limits<float>::infinity();

    SsdInputs(const Shape& s, int64_t n, uint32_t seed) : shape(s), n_tokens(n) {
        std::mt19937 rng(seed);
        const int64_t H = s.n_group * s.heads_per_group;
        d_inner = H * s.head_dim;
        row = d_inner + 2 * s.n_group * s.d_state;
        dt_stride = H + 3;
        xbc = random_vector(rng, n * row, 0.0, 1.0);
        for (int64_t t = 0; t < n; ++t) {  // B and C scaled so that C.B stays O(1) at any d_state
            for (int64_t i = d_inner; i < row; ++i) xbc[t * row + i] /= static_cast<float>(std::sqrt(s.d_state));
        }
        dt = random_vector(rng, n * dt_stride, -2.0, 1.0);
        dt_bias = random_vector(rng, H, 0.0, 0.5);
        A = random_vector(rng, H, 0.0, 0.5);
        for (float& a : A) a = -std::exp(a);
        D = random_vector(rng, H, 0.0, 1.0);
        state = random_vector(rng, H * s.head_dim * s.d_state, 0.0, 1.0);
    }

    double time_step(int64_t t, int64_t head) const {
        return std::clamp(test::softplus(double{dt[t * dt_stride + head]} + dt_bias[head]), double{t_min}, double{t_max});
    }

    // The recurrence token by token, in double: y (n x d_inner) and the final state.
    void reference(std::vector<double>& y, std::vector<double>& h) const {
        const int64_t H = shape.n_group * shape.heads_per_group, P = shape.head_dim, N = shape.d_state;
        h.assign(state.begin(), state.end());
        y.assign(n_tokens * d_inner, 0.0);
        for (int64_t t = 0; t < n_tokens; ++t) {
            const float* r = xbc.data() + t * row;
            for (int64_t head = 0; head < H; ++head) {
                const int64_t g = head / shape.heads_per_group;
                const double dt_h = time_step(t, head), decay = std::exp(dt_h * A[head]);
                const float* b = r + d_inner + g * N;
                const float* c = r + d_inner + shape.n_group * N + g * N;
                for (int64_t p = 0; p < P; ++p) {
                    const double x = r[head * P + p];
                    double sum = 0;
                    for (int64_t k = 0; k < N; ++k) {
                        double& s = h[(head * P + p) * N + k];
                        s = decay * s + dt_h * x * b[k];
                        sum += c[k] * s;
                    }
                    y[t * d_inner + head * P + p] = sum + D[head] * x;
                }
            }
        }
    }
};

void run_ssd(const SsdInputs& in, int64_t chunk, std::vector<float>& y, std::vector<float>& state, cudaStream_t stream) {
    const DeviceBuffer xbc = to_device(in.xbc, "xbc"), dt = to_device(in.dt, "dt"), bias = to_device(in.dt_bias, "bias");
    const DeviceBuffer A = to_device(in.A, "A"), D = to_device(in.D, "D");
    DeviceBuffer h = to_device(in.state, "state");
    DeviceBuffer y_d(std::max<int64_t>(1, in.n_tokens * in.d_inner) * sizeof(float), "y");
    const SsdWorkspace workspace(in.shape.ssd(), std::max<int64_t>(1, in.n_tokens), chunk);
    SsdPrefillParams p;
    p.shape = in.shape.ssd();
    p.n_tokens = in.n_tokens;
    p.chunk = chunk;
    p.x = xbc.as<float>();
    p.x_stride = in.row;
    p.B = xbc.as<float>() + in.d_inner;
    p.C = xbc.as<float>() + in.d_inner + in.shape.n_group * in.shape.d_state;
    p.bc_stride = in.row;
    p.dt = dt.as<float>();
    p.dt_stride = in.dt_stride;
    p.dt_bias = bias.as<float>();
    p.A = A.as<float>();
    p.D = D.as<float>();
    p.time_step_min = in.t_min;
    p.time_step_max = in.t_max;
    p.state = h.as<float>();
    p.y = y_d.as<float>();
    p.y_stride = in.d_inner;
    launch_ssd_prefill(p, workspace, stream);
    check(cudaStreamSynchronize(stream), "SSD prefill");
    y = from_device(y_d, in.n_tokens * in.d_inner, "y");
    state = from_device(h, in.state.size(), "state");
}

class SsdPrefill : public CudaStreamTest<::testing::TestWithParam<Shape>> {};

TEST_P(SsdPrefill, MatchesTheRecurrenceAroundChunkBoundaries) {
    const Shape shape = GetParam();
    for (const int64_t chunk : {kDefaultSsdChunk, kMaxSsdChunk}) {
        for (const int64_t n : {int64_t{1}, chunk - 1, chunk, chunk + 1, 3 * chunk + 5}) {
            const std::string what = concat(shape.name(), " chunk ", chunk, " tokens ", n);
            SsdInputs in(shape, n, static_cast<uint32_t>(n * 7 + chunk));
            std::vector<float> y, state;
            try {
                run_ssd(in, chunk, y, state, stream_);
            } catch (const Error& e) {
                // Only the long chunk at the widest shapes may outgrow shared memory, and it says so.
                ASSERT_EQ(chunk, kMaxSsdChunk) << what << ": " << e.what();
                EXPECT_NE(std::string(e.what()).find("shared memory"), std::string::npos) << e.what();
                break;
            }
            std::vector<double> y_ref, state_ref;
            in.reference(y_ref, state_ref);
            expect_close(y, y_ref, kSsdTolerance, what + " y");
            expect_close(state, state_ref, kSsdTolerance, what + " state");
        }
    }
}

TEST_P(SsdPrefill, HonoursABindingTimeStepClamp) {
    SsdInputs in(GetParam(), 2 * kDefaultSsdChunk + 3, 5);
    in.t_min = 0.15f;  // softplus of N(-2, 1) + N(0, 0.5) spans both sides of each bound
    in.t_max = 0.3f;
    std::vector<float> y, state;
    run_ssd(in, kDefaultSsdChunk, y, state, stream_);
    std::vector<double> y_ref, state_ref;
    in.reference(y_ref, state_ref);
    expect_close(y, y_ref, kSsdTolerance, "clamped y");
    expect_close(state, state_ref, kSsdTolerance, "clamped state");
}

INSTANTIATE_TEST_SUITE_P(Shapes, SsdPrefill, ::testing::ValuesIn(shapes()),
                         [](const ::testing::TestParamInfo<Shape>& info) { return info.param.name(); });

TEST(SsdPrefillArguments, RefusesChunksThatAreNotWholeTiles) {
    DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
    const Shape shape{64, 128, 1, 2};
    SsdInputs in(shape, 10, 1);
    std::vector<float> y, state;
    EXPECT_THROW(run_ssd(in, 40, y, state, nullptr), Error);
    EXPECT_THROW(run_ssd(in, 2 * kMaxSsdChunk, y, state, nullptr), Error);
}

// ---- decode ----

class Mamba2Decode : public CudaStreamTest<::testing::TestWithParam<Shape>> {};

TEST_P(Mamba2Decode, MatchesOneStepOfTheRecurrenceWithGateAndGroupedNorm) {
    const Shape s = GetParam();
    const int64_t H = s.n_group * s.heads_per_group, P = s.head_dim, N = s.d_state, d_inner = H * P;
    const int64_t n_conv = d_inner + 2 * s.n_group * N, n_in = d_inner + n_conv + H;
    const int64_t slot_stride = H * P * N, n_slots = 20;
    const float eps = 1e-5f;
    std::mt19937 rng(3);
    const std::vector<float> bias = random_vector(rng, H, 0.0, 0.5), D = random_vector(rng, H, 0.0, 1.0);
    const std::vector<float> norm = random_vector(rng, d_inner, 1.0, 0.2);
    std::vector<float> A = random_vector(rng, H, 0.0, 0.5);
    for (float& a : A) a = -std::exp(a);
    std::vector<float> states = random_vector(rng, n_slots * slot_stride, 0.0, 1.0);
    const DeviceBuffer bias_d = to_device(bias, "bias"), A_d = to_device(A, "A"), D_d = to_device(D, "D");
    const DeviceBuffer norm_d = to_device(norm, "norm");
    DeviceBuffer states_d = to_device(states, "states");
    std::vector<double> expected_states(states.begin(), states.end());
    const Mamba2DecodeWorkspace workspace(64, H, P, s.n_group);

    for (const int n_batch : {1, 3, 17}) {
        std::vector<int32_t> slots;
        for (int b = 0; b < n_batch; ++b) slots.push_back(static_cast<int32_t>((7 * b + 3) % n_slots));
        const DeviceBuffer slots_d = upload(slots.data(), slots.size() * sizeof(int32_t), "slots");
        for (int step = 0; step < 2; ++step) {
            const std::vector<float> zxbcdt = random_vector(rng, n_batch * n_in, 0.0, 1.0);
            std::vector<float> xbc = random_vector(rng, n_batch * n_conv, 0.0, 1.0);
            const DeviceBuffer zxbcdt_d = to_device(zxbcdt, "zxbcdt"), xbc_d = to_device(xbc, "xbc");
            DeviceBuffer y_d(n_batch * d_inner * sizeof(float), "y");
            Mamba2DecodeParams p;
            p.n_batch = n_batch;
            p.n_head = H;
            p.head_dim = P;
            p.d_state = N;
            p.n_group = s.n_group;
            p.zxbcdt = zxbcdt_d.as<float>();
            p.zxbcdt_stride = n_in;
            p.dt_offset = d_inner + n_conv;
            p.xbc = xbc_d.as<float>();
            p.xbc_stride = n_conv;
            p.dt_bias = bias_d.as<float>();
            p.A = A_d.as<float>();
            p.D = D_d.as<float>();
            p.norm_weight = norm_d.as<float>();
            p.eps = eps;
            p.time_step_min = 0.0f;
            p.time_step_max = std::numeric_limits<float>::infinity();
            p.states = states_d.as<float>();
            p.slot_stride = slot_stride;
            p.slots = slots_d.as<int32_t>();
            p.y = y_d.as<float>();
            p.y_stride = d_inner;
            launch_mamba2_decode(p, workspace, stream_);
            check(cudaStreamSynchronize(stream_), "Mamba-2 decode");

            std::vector<double> expected_y(n_batch * d_inner);
            for (int b = 0; b < n_batch; ++b) {
                const float* r = zxbcdt.data() + b * n_in;
                const float* x = xbc.data() + b * n_conv;
                double* y = expected_y.data() + b * d_inner;
                for (int64_t head = 0; head < H; ++head) {
                    const int64_t g = head / s.heads_per_group;
                    const double dt = test::softplus(double{r[d_inner + n_conv + head]} + bias[head]);
                    const double decay = std::exp(dt * A[head]);
                    for (int64_t q = 0; q < P; ++q) {
                        double sum = 0;
                        for (int64_t k = 0; k < N; ++k) {
                            double& h = expected_states[slots[b] * slot_stride + (head * P + q) * N + k];
                            h = decay * h + dt * x[head * P + q] * x[d_inner + g * N + k];
                            sum += x[d_inner + s.n_group * N + g * N + k] * h;
                        }
                        const int64_t c = head * P + q;
                        y[c] = (sum + D[head] * x[c]) * test::silu(r[c]);
                    }
                }
                const int64_t group_size = d_inner / s.n_group;
                for (int64_t g = 0; g < s.n_group; ++g) {
                    double ss = 0;
                    for (int64_t i = 0; i < group_size; ++i) ss += y[g * group_size + i] * y[g * group_size + i];
                    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(group_size) + eps);
                    for (int64_t i = 0; i < group_size; ++i) y[g * group_size + i] *= scale * norm[g * group_size + i];
                }
            }
            const std::string what = concat(s.name(), " batch ", n_batch, " step ", step);
            expect_close(from_device(y_d, n_batch * d_inner, "y"), expected_y, kFp32Tolerance, what + " y");
            expect_close(from_device(states_d, states.size(), "states"), expected_states, kFp32Tolerance,
                         what + " states");
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Mamba2Decode, ::testing::ValuesIn(shapes()),
                         [](const ::testing::TestParamInfo<Shape>& info) { return info.param.name(); });

// ---- the prefill's gated norm ----

class GatedNorm : public CudaStreamTest<::testing::TestWithParam<int64_t>> {};

TEST_P(GatedNorm, MatchesTheGroupedReference) {
    const int64_t n_group = GetParam(), group_size = 37, d_inner = n_group * group_size, n_rows = 5;
    const int64_t z_stride = d_inner + 11;
    const float eps = 1e-5f;
    std::mt19937 rng(static_cast<uint32_t>(n_group));
    const std::vector<float> y = random_vector(rng, n_rows * d_inner, 0.0, 1.0);
    const std::vector<float> z = random_vector(rng, n_rows * z_stride, 0.0, 1.0);
    const std::vector<float> w = random_vector(rng, d_inner, 1.0, 0.2);
    DeviceBuffer y_d = to_device(y, "y");
    const DeviceBuffer z_d = to_device(z, "z"), w_d = to_device(w, "weight");
    GatedNormParams p;
    p.n_rows = n_rows;
    p.d_inner = d_inner;
    p.n_group = n_group;
    p.y = y_d.as<float>();
    p.y_stride = d_inner;
    p.z = z_d.as<float>();
    p.z_stride = z_stride;
    p.weight = w_d.as<float>();
    p.eps = eps;
    launch_gated_rms_norm(p, stream_);
    check(cudaStreamSynchronize(stream_), "gated norm");
    std::vector<double> expected(y.size());
    for (int64_t r = 0; r < n_rows; ++r) {
        for (int64_t g = 0; g < n_group; ++g) {
            double ss = 0;
            for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) {
                expected[r * d_inner + i] = y[r * d_inner + i] * test::silu(z[r * z_stride + i]);
                ss += expected[r * d_inner + i] * expected[r * d_inner + i];
            }
            const double scale = 1.0 / std::sqrt(ss / static_cast<double>(group_size) + eps);
            for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) expected[r * d_inner + i] *= scale * w[i];
        }
    }
    expect_close(from_device(y_d, y.size(), "y"), expected, kFp32Tolerance, concat(n_group, " groups"));
}

INSTANTIATE_TEST_SUITE_P(Groups, GatedNorm, ::testing::Values(1, 8));

}  // namespace
}  // namespace dendro::cuda

#else

TEST(Mamba2Kernels, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
