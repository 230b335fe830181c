// Log-probabilities of the raw logits (src/generate/logprobs.h): log-softmax in double, top-N sorted with ties by id,
// NaN and -inf logits as impossible tokens, and the chunked all-logits prefill equal to a one-call prefill.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "generate/logprobs.h"
#include "model/model.h"
#include "random_model_file.h"

namespace dendro {
namespace {

constexpr double kTolerance = 1e-12;

TEST(PositionLogprobs, IsLogSoftmaxInDouble) {
    const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f};
    const double normalizer = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
    const PositionLogprobs out = position_logprobs(logits, 2, 3);
    EXPECT_EQ(out.chosen.id, 2);
    EXPECT_NEAR(out.chosen.logprob, 2.0 - normalizer, kTolerance);
    ASSERT_EQ(out.top.size(), 3u);
    // Most likely first; the tie between ids 1 and 3 goes to the lower id.
    EXPECT_EQ(out.top[0].id, 1);
    EXPECT_EQ(out.top[1].id, 3);
    EXPECT_EQ(out.top[2].id, 2);
    EXPECT_NEAR(out.top[0].logprob, 3.0 - normalizer, kTolerance);
    EXPECT_NEAR(out.top[2].logprob, out.chosen.logprob, kTolerance);
}

TEST(PositionLogprobs, LargeLogitsDoNotOverflow) {
    const std::vector<float> logits = {1000.0f, 1000.0f};
    EXPECT_NEAR(position_logprobs(logits, 0, 0).chosen.logprob, -std::log(2.0), kTolerance);
}

TEST(PositionLogprobs, NanAndMinusInfinityAreImpossible) {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const std::vector<float> logits = {nan, 0.0f, -inf, 0.0f};
    const PositionLogprobs out = position_logprobs(logits, 0, 4);
    EXPECT_EQ(out.chosen.logprob, -std::numeric_limits<double>::infinity());
    EXPECT_NEAR(out.top[0].logprob, -std::log(2.0), kTolerance);
    EXPECT_EQ(out.top[0].id, 1);
    EXPECT_EQ(out.top[1].id, 3);
    EXPECT_EQ(out.top[3].logprob, -std::numeric_limits<double>::infinity());
}

TEST(PositionLogprobs, TopBeyondTheVocabularyIsTheWholeVocabulary) {
    const std::vector<float> logits = {0.5f, 0.25f};
    EXPECT_EQ(position_logprobs(logits, 1, 10).top.size(), 2u);
    EXPECT_TRUE(position_logprobs(logits, 1, 0).top.empty());
}

TEST(PositionLogprobs, RejectsABadTokenOrCount) {
    const std::vector<float> logits = {0.5f, 0.25f};
    EXPECT_THROW(position_logprobs(logits, 2, 1), Error);
    EXPECT_THROW(position_logprobs(logits, -1, 1), Error);
    EXPECT_THROW(position_logprobs(logits, 0, -1), Error);
}

// Over several chunks of the all-logits prefill: every token's logprob as from one prefill of everything.
TEST(PrefillWithLogprobs, ChunkedPrefillMatchesOnePrefill) {
    const test::TempModelFile file(test::tiny_hparams_any_length(), GgmlType::F32, /*seed=*/3);
    const auto model = Model::load(file.path());
    BackendOptions options;
    options.n_threads = 1;
    const auto backend = make_cpu_backend(*model, options);
    const size_t n_vocab = static_cast<size_t>(model->hparams().n_vocab);
    constexpr size_t kTokens = 150;  // more than two chunks, not a multiple of one
    std::vector<int32_t> tokens(kTokens);
    for (size_t i = 0; i < kTokens; ++i) tokens[i] = static_cast<int32_t>((i * 7 + 3) % n_vocab);

    std::vector<float> all(kTokens * n_vocab);
    backend->reset(0);
    backend->prefill(0, tokens, all, /*all_logits=*/true);

    backend->reset(0);
    std::vector<float> last(n_vocab);
    std::vector<size_t> positions;
    prefill_with_logprobs(*backend, 0, tokens, 2, last, [&](size_t pos, const PositionLogprobs& lp) {
        positions.push_back(pos);
        const std::span<const float> row(all.data() + (pos - 1) * n_vocab, n_vocab);
        const PositionLogprobs expected = position_logprobs(row, tokens[pos], 2);
        EXPECT_EQ(lp.chosen.id, tokens[pos]);
        EXPECT_NEAR(lp.chosen.logprob, expected.chosen.logprob, 1e-5) << pos;
        ASSERT_EQ(lp.top.size(), 2u);
        EXPECT_EQ(lp.top[0].id, expected.top[0].id) << pos;
    });
    ASSERT_EQ(positions.size(), kTokens - 1);
    for (size_t i = 0; i < positions.size(); ++i) EXPECT_EQ(positions[i], i + 1);
    for (size_t v = 0; v < n_vocab; ++v) EXPECT_NEAR(last[v], all[(kTokens - 1) * n_vocab + v], 1e-4f);
}

}  // namespace
}  // namespace dendro
