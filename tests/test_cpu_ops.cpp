// The CPU backend's vectorised per-channel operations against their one-channel scalar forms.
#include <gtest/gtest.h>

#include <cmath>
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
    const std::vector<float> in = random(static_cast<size_t>(c.n_tokens * in_stride));
    const std::vector<float> window = random(static_cast<size_t>(std::max<int64_t>(n_past, 1) * c.n_channels));
    const std::vector<float> out_before = random(static_cast<size_t>(c.n_tokens * c.n_channels));

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

}  // namespace
}  // namespace dendro
