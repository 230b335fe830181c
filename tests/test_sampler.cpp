// Sampling: greedy ties, each filter's effect, the repetition penalty, seeded determinism, validation.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "generate/sampler.h"

namespace dendro {
namespace {

SamplingParams plain(float temperature = 1.0f) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 42;
    return p;
}

// Tokens drawn in `n` samples from the same logits.
std::set<int32_t> drawn(Sampler& s, const std::vector<float>& logits, int n) {
    std::set<int32_t> seen;
    for (int i = 0; i < n; ++i) seen.insert(s.sample(logits));
    return seen;
}

// Temperature 0 with the other settings at their defaults is argmax, even for a token just seen: the
// repetition penalty is off by default (as in llama.cpp and HF).
TEST(Sampler, DefaultsAtTemperatureZeroAreArgmax) {
    SamplingParams p;
    p.temperature = 0.0f;
    Sampler s(p, 3);
    s.accept(1);
    EXPECT_EQ(s.sample(std::vector<float>{0.0f, 3.0f, 2.9f}), 1);
}

TEST(Sampler, GreedyTakesArgmaxAndLowestIdOnTies) {
    Sampler s(plain(0.0f), 5);
    EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f, 0.0f}), 1);
    EXPECT_EQ(s.sample(std::vector<float>{1.0f, 4.0f, 2.0f, 4.0f, 4.0f}), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
    std::vector<float> logits(50);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i)) * 0.5f;
    Sampler a(plain(), 50), b(plain(), 50);
    SamplingParams other = plain();
    other.seed = 43;
    Sampler c(other, 50);
    std::vector<int32_t> ta, tb, tc;
    for (int i = 0; i < 64; ++i) {
        ta.push_back(a.sample(logits));
        tb.push_back(b.sample(logits));
        tc.push_back(c.sample(logits));
    }
    EXPECT_EQ(ta, tb);
    EXPECT_NE(ta, tc);
    a.reset();
    std::vector<int32_t> again;
    for (int i = 0; i < 64; ++i) again.push_back(a.sample(logits));
    EXPECT_EQ(ta, again);
}

TEST(Sampler, FollowsTheDistribution) {
    // p = softmax(log([0.5, 0.3, 0.2])) = [0.5, 0.3, 0.2].
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    Sampler s(plain(), 3);
    std::map<int32_t, int> counts;
    const int n = 20000;
    for (int i = 0; i < n; ++i) ++counts[s.sample(logits)];
    EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
    EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
    EXPECT_NEAR(counts[2] / double(n), 0.2, 0.02);
}

TEST(Sampler, TopKKeepsTheKBest) {
    const std::vector<float> logits = {1.0f, 1.1f, 0.9f, 1.2f, 0.0f, 1.15f};
    SamplingParams p = plain();
    p.top_k = 2;
    Sampler s(p, 6);
    EXPECT_EQ(drawn(s, logits, 300), (std::set<int32_t>{3, 5}));
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
    // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 needs the first two, 0.85 the first three.
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    SamplingParams p = plain();
    p.top_p = 0.7f;
    Sampler s(p, 4);
    EXPECT_EQ(drawn(s, logits, 300), (std::set<int32_t>{0, 1}));
    p.top_p = 0.85f;
    Sampler s2(p, 4);
    EXPECT_EQ(drawn(s2, logits, 600), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, MinPDropsTokensFarBelowTheBest) {
    // Relative to the best (0.5): 0.3 and 0.15 pass 0.25, 0.05 does not.
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    SamplingParams p = plain();
    p.min_p = 0.25f;
    Sampler s(p, 4);
    EXPECT_EQ(drawn(s, logits, 600), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, LowTemperatureSharpensHighFlattens) {
    const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
    Sampler cold(plain(0.05f), 3);
    EXPECT_EQ(drawn(cold, logits, 300), (std::set<int32_t>{0}));
    Sampler hot(plain(100.0f), 3);
    EXPECT_EQ(drawn(hot, logits, 300), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
    SamplingParams p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    Sampler s(p, 3);
    // 3.0 / 2 = 1.5 < 2.0: the penalised token 0 loses to token 1.
    s.accept(0);
    EXPECT_EQ(s.sample(std::vector<float>{3.0f, 2.0f, -5.0f}), 1);
    // Negative logits are multiplied: -1 * 2 = -2 < -1.5.
    Sampler t(p, 3);
    t.accept(0);
    EXPECT_EQ(t.sample(std::vector<float>{-1.0f, -1.5f, -5.0f}), 1);
    // A token counted twice in the window is penalised once.
    Sampler u(p, 3);
    u.accept(0);
    u.accept(0);
    EXPECT_EQ(u.sample(std::vector<float>{3.0f, 1.4f, -5.0f}), 0);  // 3 / 2 = 1.5 > 1.4; twice would be 0.75
}

TEST(Sampler, RepetitionWindowForgetsOldTokens) {
    SamplingParams p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    Sampler s(p, 4);
    s.accept(0);
    s.accept(2);
    s.accept(3);  // token 0 has left the window
    EXPECT_EQ(s.sample(std::vector<float>{3.0f, 2.0f, 0.0f, 0.0f}), 0);
    s.reset();
    EXPECT_EQ(s.sample(std::vector<float>{3.0f, 2.0f, 0.0f, 0.0f}), 0);
}

TEST(Sampler, ValidationNamesTheFlag) {
    const auto message = [](SamplingParams p) {
        try {
            p.validate();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("valid");
    };
    SamplingParams p;
    EXPECT_EQ(message(p), "valid");
    p = {};
    p.temperature = -0.1f;
    EXPECT_NE(message(p).find("--temp"), std::string::npos);
    p = {};
    p.top_p = 0.0f;
    EXPECT_NE(message(p).find("--top-p"), std::string::npos);
    p = {};
    p.top_p = 1.5f;
    EXPECT_NE(message(p).find("--top-p"), std::string::npos);
    p = {};
    p.min_p = -0.01f;
    EXPECT_NE(message(p).find("--min-p"), std::string::npos);
    p = {};
    p.min_p = 1.01f;
    EXPECT_NE(message(p).find("--min-p"), std::string::npos);
    p = {};
    p.repeat_penalty = 0.0f;
    EXPECT_NE(message(p).find("--repeat-penalty"), std::string::npos);
    p = {};
    p.top_k = -1;
    EXPECT_NE(message(p).find("--top-k"), std::string::npos);
    p = {};
    p.repeat_last_n = -1;
    EXPECT_NE(message(p).find("--repeat-last-n"), std::string::npos);
    p = {};
    p.temperature = -1.0f;
    EXPECT_THROW(Sampler(p, 10), Error);
}

TEST(Sampler, NanLogitsAreNeverChosen) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    Sampler greedy(plain(0.0f), 4);
    EXPECT_EQ(greedy.sample(std::vector<float>{nan, 1.0f, nan, 0.5f}), 1);
    Sampler s(plain(), 4);
    EXPECT_EQ(drawn(s, std::vector<float>{nan, 1.0f, nan, 0.5f}, 200), (std::set<int32_t>{1, 3}));
    const float inf = std::numeric_limits<float>::infinity();
    EXPECT_THROW(s.sample(std::vector<float>{nan, -inf, nan, -inf}), Error);
}

TEST(Sampler, WrongLogitCountIsAnError) {
    Sampler s(plain(), 4);
    EXPECT_THROW(s.sample(std::vector<float>{1.0f, 2.0f}), Error);
}

}  // namespace
}  // namespace dendro
