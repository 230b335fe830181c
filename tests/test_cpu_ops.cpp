// The CPU backend's vectorised per-channel operations (conv, scan, softplus) against their scalar forms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu/ops.h"

namespace dendro {
namespace {

// exp8 is within 2 ulp of std::exp, so the SiLU outputs may differ by a few ulp of the result.
constexpr float kRelativeTolerance = 1e-6f;

struct ConvCase {
    int64_t n_channels, d_conv, begin, end, n_tokens;
    bool bias;
};

class ConvSiluChannels : public ::testing::TestWithParam<ConvCase> {};

// Eight channels at a time (and the scalar tail) give what the channel-by-channel conv gives: the outputs to
// within exp8's rounding, the advanced windows exactly (they hold copies of the inputs), and channels outside
// [begin, end) untouched.
TEST_P(ConvSiluChannels, MatchChannelByChannel) {
    const ConvCase c = GetParam();
    std::mt19937 rng(static_cast<unsigned>(c.n_channels * 131 + c.d_conv * 17 + c.n_tokens));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    const auto random = [&](size_t n) {
        std::vector<float> v(n);
        for (float& x : v) x = normal(rng);
        return v;
    };
    const int64_t in_stride = c.n_channels + 5, n_past = c.d_conv - 1;  // the input rows hold other columns too
    const std::vector<float> taps_by_slot = random(static_cast<size_t>(c.d_conv * c.n_channels));
    const std::vector<float> bias = c.bias ? random(static_cast<size_t>(c.n_channels)) : std::vector<float>{};
    // At least one row of inputs and outputs, so that the pointers below are valid with no tokens too.
    const int64_t rows = std::max<int64_t>(c.n_tokens, 1);
    const std::vector<float> in = random(static_cast<size_t>(rows * in_stride));
    const std::vector<float> window = random(static_cast<size_t>(std::max<int64_t>(n_past, 1) * c.n_channels));
    const std::vector<float> out_before = random(static_cast<size_t>(rows * c.n_channels));

    std::vector<float> window_vector = window, out_vector = out_before;
    const cpu::ConvTaps taps{taps_by_slot.data(), c.n_channels, c.d_conv, c.bias ? bias.data() : nullptr};
    cpu::conv_silu_channels(taps, c.begin, c.end, {window_vector.data(), c.n_channels}, {in.data(), in_stride},
                            {out_vector.data(), c.n_channels}, c.n_tokens);

    std::vector<float> window_scalar = window, out_scalar = out_before;
    for (int64_t ch = c.begin; ch < c.end; ++ch) {
        cpu::conv_silu_channel({taps_by_slot.data() + ch, c.n_channels}, c.d_conv, c.bias ? bias[ch] : 0.0f,
                               {window_scalar.data() + ch, c.n_channels}, {in.data() + ch, in_stride},
                               {out_scalar.data() + ch, c.n_channels}, c.n_tokens);
    }
    EXPECT_EQ(window_vector, window_scalar);
    for (size_t i = 0; i < out_scalar.size(); ++i) {
        const int64_t ch = static_cast<int64_t>(i) % c.n_channels;
        if (ch < c.begin || ch >= c.end) {
            ASSERT_EQ(out_vector[i], out_before[i]) << "channel " << ch << " is outside the range";
        } else {
            ASSERT_NEAR(out_vector[i], out_scalar[i], kRelativeTolerance * std::max(1.0f, std::fabs(out_scalar[i])))
                << "token " << i / c.n_channels << " channel " << ch;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvSiluChannels,
                         ::testing::Values(ConvCase{64, 4, 0, 64, 7, true}, ConvCase{64, 4, 8, 40, 1, false},
                                           ConvCase{37, 4, 3, 37, 5, true}, ConvCase{16, 1, 0, 16, 3, true},
                                           ConvCase{24, 2, 0, 24, 9, false}, ConvCase{40, 6, 5, 29, 4, true},
                                           ConvCase{8, 4, 0, 8, 0, true}));

// softplus8 against the scalar softplus (log1p(exp(x)) below the threshold), over the whole range: large
// negative inputs (where the value is e^x, tiny), around 0, and past the threshold (the input itself).
TEST(Softplus8, MatchesScalarSoftplus) {
    for (float start = -104.0f; start < 40.0f; start += 8 * 0.37f) {
        float in[cpu::kLanes], got[cpu::kLanes];
        for (int i = 0; i < cpu::kLanes; ++i) in[i] = start + 0.37f * static_cast<float>(i);
        cpu::store8(got, cpu::softplus8(cpu::load8(in)));
        for (int i = 0; i < cpu::kLanes; ++i) {
            const float want = cpu::softplus(in[i]);
            // exp8 clamps its results below FLT_MIN to FLT_MIN's size, where std::exp underflows to 0.
            const float tolerance = std::max(8 * kRelativeTolerance * std::fabs(want), 2 * std::numeric_limits<float>::min());
            ASSERT_NEAR(got[i], want, tolerance) << "softplus(" << in[i] << ")";
        }
    }
    // Non-finite inputs as the scalar softplus takes them: NaN stays NaN, +inf is +inf, -inf gives 0.
    float in[cpu::kLanes] = {NAN, INFINITY, -INFINITY, 0.0f, -NAN, 1.0f, -1.0f, 25.0f}, got[cpu::kLanes];
    cpu::store8(got, cpu::softplus8(cpu::load8(in)));
    EXPECT_TRUE(std::isnan(got[0]));
    EXPECT_TRUE(std::isnan(got[4]));
    EXPECT_EQ(got[1], INFINITY);
    EXPECT_NEAR(got[2], 0.0f, 1e-30f);
    EXPECT_EQ(got[7], 25.0f);
}

struct ScanCase {
    int64_t n_channels, d_state, begin, end, n_tokens;
};

class ScanChannels : public ::testing::TestWithParam<ScanCase> {};

// Eight channels at a time (with the states transposed into vectors) give what the channel-by-channel scan
// gives, outputs and final states, within the vector transcendental functions' rounding; channels outside
// [begin, end) are untouched.
TEST_P(ScanChannels, MatchChannelByChannel) {
    const ScanCase c = GetParam();
    std::mt19937 rng(static_cast<unsigned>(c.n_channels * 7 + c.d_state * 3 + c.n_tokens));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const auto random = [&](size_t n, float scale, float shift) {
        std::vector<float> v(n);
        for (float& x : v) x = shift + scale * normal(rng);
        return v;
    };
    const int64_t row = c.n_channels + 3, bc_row = 2 * c.d_state + 1;
    const std::vector<float> dt_proj = random(static_cast<size_t>(c.n_tokens * row), 3.0f, -2.0f);
    const std::vector<float> x = random(static_cast<size_t>(c.n_tokens * row), 1.0f, 0.0f);
    const std::vector<float> z = random(static_cast<size_t>(c.n_tokens * row), 2.0f, 0.0f);
    const std::vector<float> bc = random(static_cast<size_t>(c.n_tokens * bc_row), 1.0f, 0.0f);
    std::vector<float> a_by_state = random(static_cast<size_t>(c.d_state * c.n_channels), 1.0f, 0.0f);
    for (float& a : a_by_state) a = -std::exp(a);  // A = -exp(A_log) < 0
    const std::vector<float> d = random(static_cast<size_t>(c.n_channels), 1.0f, 0.0f);
    const std::vector<float> dt_bias = random(static_cast<size_t>(c.n_channels), 1.0f, 0.0f);
    const std::vector<float> h0 = random(static_cast<size_t>(c.n_channels * c.d_state), 1.0f, 0.0f);
    const std::vector<float> y0 = random(static_cast<size_t>(c.n_tokens * c.n_channels), 1.0f, 0.0f);

    const cpu::ScanChannelInputs in{{dt_proj.data(), row}, {x.data(), row}, {z.data(), row}, {bc.data(), bc_row},
                                    {bc.data() + c.d_state, bc_row}};
    std::vector<float> h_vector = h0, y_vector = y0;
    const cpu::ScanWeights w{a_by_state.data(), c.n_channels, d.data(), dt_bias.data(), c.d_state};
    cpu::scan_channels(in, w, c.begin, c.end, h_vector.data(), {y_vector.data(), c.n_channels}, c.n_tokens);

    std::vector<float> h_scalar = h0, y_scalar = y0;
    for (int64_t ch = c.begin; ch < c.end; ++ch) {
        std::vector<float> a(static_cast<size_t>(c.d_state));
        for (int64_t s = 0; s < c.d_state; ++s) a[s] = a_by_state[s * c.n_channels + ch];
        const cpu::ScanChannelInputs one{{dt_proj.data() + ch, row}, {x.data() + ch, row}, {z.data() + ch, row},
                                         in.b, in.c};
        cpu::scan_channel(one, a.data(), d[ch], dt_bias[ch], c.d_state, h_scalar.data() + ch * c.d_state,
                          {y_scalar.data() + ch, c.n_channels}, c.n_tokens);
    }
    // The scalar scan sums C.h in 8-lane order, the vector one state by state: allow for that too.
    constexpr float kScanTolerance = 2e-5f;
    for (size_t i = 0; i < h_scalar.size(); ++i) {
        ASSERT_NEAR(h_vector[i], h_scalar[i], kScanTolerance * std::max(1.0f, std::fabs(h_scalar[i]))) << "state " << i;
    }
    for (size_t i = 0; i < y_scalar.size(); ++i) {
        const int64_t ch = static_cast<int64_t>(i) % c.n_channels;
        if (ch < c.begin || ch >= c.end) {
            ASSERT_EQ(y_vector[i], y0[i]) << "channel " << ch << " is outside the range";
        } else {
            ASSERT_NEAR(y_vector[i], y_scalar[i], kScanTolerance * std::max(1.0f, std::fabs(y_scalar[i])))
                << "token " << i / c.n_channels << " channel " << ch;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScanChannels,
                         ::testing::Values(ScanCase{32, 16, 0, 32, 9}, ScanCase{32, 16, 8, 24, 1},
                                           ScanCase{27, 16, 2, 27, 5}, ScanCase{16, 8, 0, 16, 3},
                                           ScanCase{24, 12, 0, 24, 4}, ScanCase{16, 32, 0, 16, 2},
                                           // Two groups at a time, then one: with the states held in
                                           // registers (16) and in memory (8), and far enough to prefetch.
                                           ScanCase{88, 16, 0, 88, 3}, ScanCase{24, 8, 0, 24, 3}));

}  // namespace
}  // namespace dendro
