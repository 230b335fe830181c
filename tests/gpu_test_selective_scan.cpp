// The CUDA chunked selective scan against the CPU backend's sequential scan (cpu::scan_channel): outputs and
// final state from a random initial state, for d_state 4 and 16, odd channel counts and lengths from 1 to past
// the chunk and block sizes; and a scan split at any point and resumed from the state equals the whole scan.
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
#include "mamba1/selective_scan.h"

namespace dendro::cuda {
namespace {

constexpr int64_t kDtRank = 5;  // x_dbl rows are [dt_low, B, C] as the model lays them out

struct ScanInputs {
    int64_t n_tokens, d_inner, d_state;
    std::vector<float> u, dt, dt_bias, A, x_dbl, D, z, state;
    int64_t bc_stride() const { return kDtRank + 2 * d_state; }
};

ScanInputs random_inputs(int64_t n_tokens, int64_t d_inner, int64_t d_state, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    ScanInputs in{n_tokens, d_inner, d_state, {}, {}, {}, {}, {}, {}, {}, {}};
    auto fill = [&](std::vector<float>& v, size_t n, float mean, float scale) {
        v.resize(n);
        for (float& x : v) x = mean + scale * normal(rng);
    };
    fill(in.u, n_tokens * d_inner, 0.0f, 1.0f);
    fill(in.dt, n_tokens * d_inner, -3.0f, 1.0f);  // softplus of these: Mamba's typical small steps
    fill(in.dt_bias, d_inner, 0.0f, 0.5f);
    fill(in.A, d_inner * d_state, 0.0f, 1.0f);
    for (float& a : in.A) a = -std::exp(a);
    fill(in.x_dbl, n_tokens * in.bc_stride(), 0.0f, 1.0f);
    fill(in.D, d_inner, 0.0f, 1.0f);
    fill(in.z, n_tokens * d_inner, 0.0f, 1.0f);
    fill(in.state, d_inner * d_state, 0.0f, 1.0f);
    return in;
}

// Runs tokens [first, first + count) of `in` on the device from `state` (updated); returns their outputs.
std::vector<float> device_scan(const ScanInputs& in, int64_t first, int64_t count, std::vector<float>& state,
                               cudaStream_t stream) {
    auto up = [](const float* p, size_t n) { return upload(p, n * sizeof(float), "scan input"); };
    const DeviceBuffer u = up(in.u.data() + first * in.d_inner, count * in.d_inner);
    const DeviceBuffer dt = up(in.dt.data() + first * in.d_inner, count * in.d_inner);
    const DeviceBuffer dt_bias = up(in.dt_bias.data(), in.d_inner);
    const DeviceBuffer A = up(in.A.data(), in.A.size());
    const DeviceBuffer x_dbl = up(in.x_dbl.data() + first * in.bc_stride(), count * in.bc_stride());
    const DeviceBuffer D = up(in.D.data(), in.d_inner);
    const DeviceBuffer z = up(in.z.data() + first * in.d_inner, count * in.d_inner);
    const DeviceBuffer state_d = up(state.data(), state.size());
    DeviceBuffer y(count * in.d_inner * sizeof(float), "scan output");
    ScanParams p;
    p.n_tokens = count;
    p.d_inner = in.d_inner;
    p.d_state = in.d_state;
    p.u = u.as<float>();
    p.u_stride = in.d_inner;
    p.dt = dt.as<float>();
    p.dt_stride = in.d_inner;
    p.dt_bias = dt_bias.as<float>();
    p.A = A.as<float>();
    p.B = x_dbl.as<float>() + kDtRank;
    p.C = x_dbl.as<float>() + kDtRank + in.d_state;
    p.bc_stride = in.bc_stride();
    p.D = D.as<float>();
    p.z = z.as<float>();
    p.z_stride = in.d_inner;
    p.state = state_d.as<float>();
    p.y = y.as<float>();
    p.y_stride = in.d_inner;
    launch_selective_scan(p, stream);
    check(cudaStreamSynchronize(stream), "selective scan");
    std::vector<float> out(count * in.d_inner);
    download(y.get(), out.data(), out.size() * sizeof(float), "scan output");
    download(state_d.get(), state.data(), state.size() * sizeof(float), "scan state");
    return out;
}

std::vector<float> reference_scan(const ScanInputs& in, std::vector<float>& state) {
    std::vector<float> y(in.n_tokens * in.d_inner);
    for (int64_t c = 0; c < in.d_inner; ++c) {
        const cpu::ScanChannelInputs channel{
            {in.dt.data() + c, in.d_inner},
            {in.u.data() + c, in.d_inner},
            {in.z.data() + c, in.d_inner},
            {in.x_dbl.data() + kDtRank, in.bc_stride()},
            {in.x_dbl.data() + kDtRank + in.d_state, in.bc_stride()},
        };
        cpu::scan_channel(channel, in.A.data() + c * in.d_state, in.D[c], in.dt_bias[c], in.d_state,
                          state.data() + c * in.d_state, {y.data() + c, in.d_inner}, in.n_tokens);
    }
    return y;
}

using SelectiveScan = CudaStreamTest<>;

constexpr float kScanTolerance = 2e-4f;

TEST_F(SelectiveScan, MatchesSequentialReference) {
    std::mt19937 rng(5);
    struct Case {
        int64_t d_inner, d_state, n_tokens;
    };
    // d_state 1, 5, 7: a partial last group of states (the kernel walks them 4 at a time); 64: a larger B/C
    // tile; d_inner 1536 and 2049 tokens: the 130m shape across chunks.
    for (const Case& c : {Case{37, 4, 1}, Case{37, 16, 7}, Case{64, 16, 2048}, Case{45, 4, 5000}, Case{33, 16, 129},
                          Case{130, 16, 5000}, Case{1, 4, 300}, Case{3, 1, 128}, Case{37, 5, 300}, Case{40, 7, 129},
                          Case{50, 64, 257}, Case{1536, 16, 2049}}) {
        const ScanInputs in = random_inputs(c.n_tokens, c.d_inner, c.d_state, rng);
        std::vector<float> device_state = in.state, reference_state = in.state;
        const auto y = device_scan(in, 0, c.n_tokens, device_state, stream_);
        const auto expected = reference_scan(in, reference_state);
        const std::string what = concat("d_inner ", c.d_inner, " d_state ", c.d_state, " tokens ", c.n_tokens);
        expect_all_near(y, expected, kScanTolerance, what + " outputs");
        expect_all_near(device_state, reference_state, kScanTolerance, what + " final state");
    }
}

TEST_F(SelectiveScan, ResumedScanEqualsUninterruptedScan) {
    std::mt19937 rng(6);
    const ScanInputs in = random_inputs(2048, 45, 16, rng);
    std::vector<float> whole_state = in.state;
    const auto whole = device_scan(in, 0, in.n_tokens, whole_state, stream_);
    for (int64_t split : {1, 127, 128, 129, 1000, 2047}) {
        std::vector<float> state = in.state;
        auto y = device_scan(in, 0, split, state, stream_);
        const auto rest = device_scan(in, split, in.n_tokens - split, state, stream_);
        y.insert(y.end(), rest.begin(), rest.end());
        // Only the grouping of the parallel composition changes with the split point.
        expect_all_near(y, whole, 5e-5f, concat("split at ", split, " outputs"));
        expect_all_near(state, whole_state, 5e-5f, concat("split at ", split, " final state"));
    }
}

}  // namespace
}  // namespace dendro::cuda

#else

TEST(SelectiveScan, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
