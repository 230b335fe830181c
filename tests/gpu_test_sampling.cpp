// On-device token sampling: greedy picks the first largest logit; top-k and top-p never pick outside the
// allowed set; the same seed and counters give the same tokens; counters advance per draw; and a peaked
// distribution is sampled with about the right frequencies.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "runtime/cuda_check.h"
#include "runtime/device_buffer.h"
#include "common/error.h"
#include "ops/sampled_tokens.h"
#include "ops/sampling.h"

namespace dendro::cuda {
namespace {

class Sampling : public CudaStreamTest<> {
protected:

    // Samples every row of `logits` (n_rows x n_vocab) once with `config`, counters starting at `counters`.
    std::vector<int32_t> sample(const std::vector<float>& logits, int64_t n_vocab, const SamplingConfig& config,
                                std::vector<uint64_t>& counters) {
        const int n_rows = static_cast<int>(logits.size() / n_vocab);
        const DeviceBuffer logits_d = upload(logits.data(), logits.size() * sizeof(float), "logits");
        const DeviceBuffer config_d = upload(&config, sizeof(config), "config");
        DeviceBuffer counters_d = upload(counters.data(), counters.size() * sizeof(uint64_t), "counters");
        DeviceBuffer tokens_d(n_rows * sizeof(int32_t), "tokens");
        launch_sample_tokens(logits_d.as<float>(), n_vocab, n_rows, config_d.as<SamplingConfig>(),
                             counters_d.as<uint64_t>(), nullptr, tokens_d.as<int32_t>(), stream_);
        check(cudaStreamSynchronize(stream_), "sampling");
        std::vector<int32_t> tokens(n_rows);
        download(tokens_d.get(), tokens.data(), tokens.size() * sizeof(int32_t), "tokens");
        download(counters_d.get(), counters.data(), counters.size() * sizeof(uint64_t), "counters");
        return tokens;
    }
};

std::vector<float> random_logits(int n_rows, int64_t n_vocab, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(n_rows * n_vocab);
    for (float& l : logits) l = normal(rng);
    return logits;
}

TEST_F(Sampling, GreedyPicksTheFirstLargestLogit) {
    std::mt19937 rng(1);
    const int64_t n_vocab = 50280;
    auto logits = random_logits(4, n_vocab, rng);
    logits[2 * n_vocab + 10] = 100.0f;
    logits[2 * n_vocab + 20000] = 100.0f;  // a tie: the lower id wins
    std::vector<uint64_t> counters(4, 0);
    const auto tokens = sample(logits, n_vocab, SamplingConfig{}, counters);
    for (int r = 0; r < 4; ++r) {
        const auto row = logits.begin() + r * n_vocab;
        EXPECT_EQ(tokens[r], std::max_element(row, row + n_vocab) - row) << "row " << r;
    }
}

// NaN logits count as -inf: never chosen greedily or by sampling (with top-k and top-p too), no weight; a
// row of NaN and -inf only gets kNoSampledToken and leaves its counter alone.
TEST_F(Sampling, NanLogitsAreNeverChosenAndAnAllNanRowHasNoToken) {
    std::mt19937 rng(7);
    const int64_t n_vocab = 1000;
    auto logits = random_logits(3, n_vocab, rng);
    for (int64_t i = 0; i < n_vocab; i += 2) logits[i] = NAN;  // row 0: every even token NaN
    for (int64_t i = 0; i < n_vocab; ++i) logits[2 * n_vocab + i] = (i % 2 == 0) ? NAN : -INFINITY;  // row 2
    std::vector<uint64_t> counters(3, 0);
    for (const SamplingConfig& config : {SamplingConfig{}, SamplingConfig{1.0f, 0, 1.0f, 5},
                                         SamplingConfig{2.0f, 7, 1.0f, 5}, SamplingConfig{1.0f, 0, 0.9f, 5}}) {
        for (int draw = 0; draw < 20; ++draw) {
            const auto tokens = sample(logits, n_vocab, config, counters);
            EXPECT_EQ(tokens[0] % 2, 1) << "row 0 drew NaN token " << tokens[0];
            EXPECT_GE(tokens[1], 0);
            EXPECT_EQ(tokens[2], kNoSampledToken);
        }
    }
    EXPECT_EQ(counters[2], 0u);
}

TEST_F(Sampling, TopKOneIsGreedyAndTopKStaysInTheTopK) {
    std::mt19937 rng(2);
    const int64_t n_vocab = 1000;
    const auto logits = random_logits(8, n_vocab, rng);
    std::vector<uint64_t> counters(8, 0);
    const auto greedy = sample(logits, n_vocab, SamplingConfig{}, counters);
    EXPECT_EQ(sample(logits, n_vocab, SamplingConfig{1.0f, 1, 1.0f, 42}, counters), greedy);
    for (int draw = 0; draw < 50; ++draw) {
        const auto tokens = sample(logits, n_vocab, SamplingConfig{1.5f, 5, 1.0f, 42}, counters);
        for (int r = 0; r < 8; ++r) {
            std::vector<float> row(logits.begin() + r * n_vocab, logits.begin() + (r + 1) * n_vocab);
            std::nth_element(row.begin(), row.begin() + 4, row.end(), std::greater<float>());
            EXPECT_GE(logits[r * n_vocab + tokens[r]], row[4]) << "draw " << draw << " row " << r;
        }
    }
}

TEST_F(Sampling, TopPStaysInTheNucleus) {
    std::mt19937 rng(3);
    const int64_t n_vocab = 5000;
    const float top_p = 0.5f;
    const auto logits = random_logits(4, n_vocab, rng);
    std::vector<uint64_t> counters(4, 0);
    for (int draw = 0; draw < 50; ++draw) {
        const auto tokens = sample(logits, n_vocab, SamplingConfig{1.0f, 0, top_p, 7}, counters);
        for (int r = 0; r < 4; ++r) {
            // The nucleus: the most likely tokens until their probability reaches top_p.
            std::vector<float> row(logits.begin() + r * n_vocab, logits.begin() + (r + 1) * n_vocab);
            std::sort(row.begin(), row.end(), std::greater<float>());
            double total = 0.0;
            for (float l : row) total += std::exp(static_cast<double>(l - row[0]));
            double mass = 0.0;
            float smallest_kept = row[0];
            for (float l : row) {
                smallest_kept = l;
                mass += std::exp(static_cast<double>(l - row[0])) / total;
                if (mass >= top_p) break;
            }
            EXPECT_GE(logits[r * n_vocab + tokens[r]], smallest_kept) << "draw " << draw << " row " << r;
        }
    }
}

TEST_F(Sampling, SameSeedAndCountersGiveSameTokensAndCountersAdvance) {
    std::mt19937 rng(4);
    const int64_t n_vocab = 777;
    const auto logits = random_logits(6, n_vocab, rng);
    const SamplingConfig config{0.8f, 40, 0.95f, 1234};
    std::vector<uint64_t> a(6, 5), b(6, 5);
    EXPECT_EQ(sample(logits, n_vocab, config, a), sample(logits, n_vocab, config, b));
    EXPECT_EQ(a, std::vector<uint64_t>(6, 6));
}

TEST_F(Sampling, FrequenciesFollowTheDistribution) {
    // Three tokens at probabilities 0.6, 0.3, 0.1; the rest impossible in practice.
    const int64_t n_vocab = 64;
    std::vector<float> row(n_vocab, -1e30f);
    row[3] = std::log(0.6f);
    row[40] = std::log(0.3f);
    row[63] = std::log(0.1f);
    constexpr int kRows = 4000;
    std::vector<float> logits;
    for (int r = 0; r < kRows; ++r) logits.insert(logits.end(), row.begin(), row.end());
    std::vector<uint64_t> counters(kRows);
    std::iota(counters.begin(), counters.end(), 0);  // independent draws
    const auto tokens = sample(logits, n_vocab, SamplingConfig{1.0f, 0, 1.0f, 99}, counters);
    const auto count = [&](int32_t id) {
        return static_cast<double>(std::count(tokens.begin(), tokens.end(), id)) / kRows;
    };
    EXPECT_NEAR(count(3), 0.6, 0.04);
    EXPECT_NEAR(count(40), 0.3, 0.04);
    EXPECT_NEAR(count(63), 0.1, 0.03);
}

}  // namespace
}  // namespace dendro::cuda

#else

TEST(Sampling, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
