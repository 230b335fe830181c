// The CUDA residual + RMSNorm, the weightless segment norm, and the conv1d prefill/decode kernels against
// the CPU backend's reference operations (cpu_ops.h), including the carried conv window.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <random>
#include <vector>

#include "ops/conv1d.h"
#include "cpu/ops.h"
#include "runtime/cuda_check.h"
#include "runtime/device_buffer.h"
#include "common/error.h"
#include "ops/rms_norm.h"

namespace dendro::cuda {
namespace {

constexpr float kTolerance = 1e-5f;

std::vector<float> random_vector(size_t n, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

DeviceBuffer to_device(const std::vector<float>& v) { return upload(v.data(), v.size() * sizeof(float), "test input"); }

std::vector<float> to_host(const DeviceBuffer& b, size_t n) {
    std::vector<float> v(n);
    download(b.get(), v.data(), n * sizeof(float), "test output");
    return v;
}

class NormConv : public CudaStreamTest<> {
protected:
    void sync() { check(cudaStreamSynchronize(stream_), "test kernels"); }
};

TEST_F(NormConv, ResidualRmsNormAddsThenNormalises) {
    std::mt19937 rng(1);
    for (int64_t d : {1, 37, 768, 2560}) {
        const int64_t rows = 5;
        auto h = random_vector(rows * d, rng), delta = random_vector(rows * d, rng), weight = random_vector(d, rng);
        DeviceBuffer h_d = to_device(h), delta_d = to_device(delta), weight_d = to_device(weight);
        DeviceBuffer out_d(rows * d * sizeof(float), "out");
        launch_residual_rms_norm(h_d.as<float>(), delta_d.as<float>(), weight_d.as<float>(), out_d.as<float>(), rows, d,
                                 1e-5f, stream_);
        sync();
        std::vector<float> expected_h(h), expected_out(rows * d);
        for (int64_t i = 0; i < rows * d; ++i) expected_h[i] += delta[i];
        for (int64_t r = 0; r < rows; ++r) {
            cpu::rms_norm(expected_h.data() + r * d, weight.data(), d, 1e-5f, expected_out.data() + r * d);
        }
        expect_all_near(to_host(h_d, h.size()), expected_h, kTolerance, "residual");
        expect_all_near(to_host(out_d, expected_out.size()), expected_out, 1e-4f, "norm");

        // Without a delta the residual stays as it is.
        launch_residual_rms_norm(h_d.as<float>(), nullptr, weight_d.as<float>(), out_d.as<float>(), rows, d, 1e-5f,
                                 stream_);
        sync();
        expect_all_near(to_host(h_d, h.size()), expected_h, kTolerance, "residual without delta");
        expect_all_near(to_host(out_d, expected_out.size()), expected_out, 1e-4f, "norm without delta");
    }
}

TEST_F(NormConv, SegmentNormTouchesOnlyItsSegment) {
    std::mt19937 rng(2);
    const int64_t rows = 9, stride = 48, offset = 13, n = 16;
    auto x = random_vector(rows * stride, rng);
    DeviceBuffer x_d = to_device(x);
    launch_rms_norm_segment(x_d.as<float>(), stride, offset, n, rows, 1e-6f, stream_);
    sync();
    std::vector<float> expected(x);
    for (int64_t r = 0; r < rows; ++r) {
        float* seg = expected.data() + r * stride + offset;
        cpu::rms_norm(seg, nullptr, n, 1e-6f, seg);
    }
    expect_all_near(to_host(x_d, x.size()), expected, 1e-5f, "segment norm");
}

struct ConvCase {
    int64_t d_inner, d_conv, n_tokens;
};

TEST_F(NormConv, ConvPrefillMatchesReferenceAndCarriesTheWindow) {
    std::mt19937 rng(3);
    for (const ConvCase& c : {ConvCase{37, 4, 1}, ConvCase{37, 4, 7}, ConvCase{300, 4, 2048}, ConvCase{129, 3, 130},
                              ConvCase{64, 2, 65}, ConvCase{33, 4, 5000}}) {
        const int64_t x_stride = 2 * c.d_inner;  // conv inputs are the x half of in_proj's output
        const int64_t past = c.d_conv - 1;
        auto x = random_vector(c.n_tokens * x_stride, rng), taps = random_vector(c.d_inner * c.d_conv, rng);
        auto bias = random_vector(c.d_inner, rng), window = random_vector(past * c.d_inner, rng);
        DeviceBuffer x_d = to_device(x), taps_d = to_device(taps), bias_d = to_device(bias);
        DeviceBuffer window_d = to_device(window);
        DeviceBuffer out_d(c.n_tokens * c.d_inner * sizeof(float), "out");
        const ConvWeights conv{c.d_inner, c.d_conv, taps_d.as<float>(), bias_d.as<float>()};
        launch_conv1d_prefill(conv, x_d.as<float>(), x_stride, c.n_tokens, window_d.as<float>(), out_d.as<float>(),
                              stream_);
        sync();
        std::vector<float> expected_out(c.n_tokens * c.d_inner), expected_window(window);
        for (int64_t ch = 0; ch < c.d_inner; ++ch) {
            cpu::conv_silu_channel({taps.data() + ch * c.d_conv, 1}, c.d_conv, bias[ch],
                                   {expected_window.data() + ch, c.d_inner}, {x.data() + ch, x_stride},
                                   {expected_out.data() + ch, c.d_inner}, c.n_tokens);
        }
        const std::string what = concat("d_inner ", c.d_inner, " d_conv ", c.d_conv, " tokens ", c.n_tokens);
        expect_all_near(to_host(out_d, expected_out.size()), expected_out, kTolerance, what + " outputs");
        expect_all_near(to_host(window_d, window.size()), expected_window, 0.0f, what + " window");
    }
}

TEST_F(NormConv, ConvDecodeAdvancesEachSlotsWindow) {
    std::mt19937 rng(4);
    const int64_t d_inner = 45, d_conv = 4, past = d_conv - 1, n_slots = 5;
    const int64_t slot_stride = past * d_inner + 7;  // slots need not be packed
    const std::vector<int32_t> slots = {3, 0, 4};
    const int n_batch = static_cast<int>(slots.size());
    auto taps = random_vector(d_inner * d_conv, rng), windows = random_vector(n_slots * slot_stride, rng);
    auto x = random_vector(n_batch * 2 * d_inner, rng);
    DeviceBuffer taps_d = to_device(taps), windows_d = to_device(windows), x_d = to_device(x);
    DeviceBuffer slots_d = upload(slots.data(), slots.size() * sizeof(int32_t), "slots");
    DeviceBuffer out_d(n_batch * d_inner * sizeof(float), "out");
    const ConvWeights conv{d_inner, d_conv, taps_d.as<float>(), nullptr};
    launch_conv1d_decode(conv, x_d.as<float>(), 2 * d_inner, n_batch, windows_d.as<float>(), slot_stride,
                         slots_d.as<int32_t>(), out_d.as<float>(), stream_);
    sync();
    std::vector<float> expected_windows(windows), expected_out(n_batch * d_inner);
    for (int b = 0; b < n_batch; ++b) {
        for (int64_t ch = 0; ch < d_inner; ++ch) {
            cpu::conv_silu_channel({taps.data() + ch * d_conv, 1}, d_conv, 0.0f,
                                   {expected_windows.data() + slots[b] * slot_stride + ch, d_inner},
                                   {x.data() + b * 2 * d_inner + ch, 2 * d_inner},
                                   {expected_out.data() + b * d_inner + ch, d_inner}, 1);
        }
    }
    expect_all_near(to_host(out_d, expected_out.size()), expected_out, kTolerance, "decode outputs");
    expect_all_near(to_host(windows_d, windows.size()), expected_windows, 0.0f, "decode windows");
}

}  // namespace
}  // namespace dendro::cuda

#else

TEST(NormConv, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
