// The prefix cache on the CUDA backend: a checkpointed prefill, a resume from a checkpoint and an exact hit
// give the logits of a plain whole-prompt prefill (within the backend's chunking tolerance), and decoding on
// from a restored state follows decoding on from the computed one. Skips without a CUDA device (fails instead
// with DENDRO_REQUIRE_GPU=1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cache/cached_prefill.h"
#include "model/model.h"
#include "model/model_fingerprint.h"
#include "cache/prefix_cache.h"
#include "gpu_test_support.h"
#include "random_model_file.h"
#include "temp_dir.h"

namespace dendro {
namespace {

// Relative to the largest |logit|: prefill chunks of other lengths may take other GEMM algorithms, whose fp16
// products round differently.
constexpr float kChunkingTolerance = 2e-2f;
constexpr int64_t kEvery = 16;

std::vector<int32_t> random_tokens(size_t n, int64_t n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = dist(rng);
    return tokens;
}

void expect_near(std::span<const float> actual, std::span<const float> expected, const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    float scale = 1.0f;
    for (float e : expected) scale = std::max(scale, std::fabs(e));
    for (size_t i = 0; i < actual.size(); ++i) {
        ASSERT_NEAR(actual[i], expected[i], kChunkingTolerance * scale) << what << ", logit " << i;
    }
}

class CudaPrefixCache : public ::testing::Test {
protected:
    void SetUp() override {
        DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
        model_file = std::make_unique<test::TempModelFile>(test::tiny_hparams_q8(), GgmlType::F16);
        model = Model::load(model_file->path());
        hp = model->hparams();
        BackendOptions options;
        options.n_seq_max = 2;
        backend = make_backend(DeviceKind::Cuda, *model, options);
        cache = std::make_unique<PrefixCache>(CacheDirectory::open(dir.file("cache"), true),
                                              fingerprint_model_file(model->gguf(), ""), hp, kDefaultPrefixCacheBytes,
                                              [this](const std::string& m) { warnings.push_back(m); });
        prompt = random_tokens(100, hp.n_vocab, 21);
    }

    // A plain whole prefill on slot 1.
    std::vector<float> plain(std::span<const int32_t> tokens) {
        std::vector<float> logits(static_cast<size_t>(hp.n_vocab));
        backend->reset(1);
        backend->prefill(1, tokens, logits, false);
        return logits;
    }

    CachedPrefillStats cached(std::span<const int32_t> tokens, std::vector<float>& logits) {
        logits.assign(static_cast<size_t>(hp.n_vocab), 0.0f);
        return prefill_with_cache(*backend, 0, tokens, cache.get(), kEvery, logits).finish();
    }

    test::TempDir dir;
    std::unique_ptr<test::TempModelFile> model_file;
    std::unique_ptr<Model> model;
    ModelHparams hp;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<PrefixCache> cache;
    std::vector<int32_t> prompt;
    std::vector<std::string> warnings;
};

TEST_F(CudaPrefixCache, CheckpointedResumedAndExactHitsMatchAPlainPrefill) {
    std::vector<float> logits;
    const CachedPrefillStats cold = cached(prompt, logits);
    EXPECT_EQ(cold.snapshots_stored, 100 / kEvery + 1);
    expect_near(logits, plain(prompt), "checkpointed prefill");
    const std::vector<float> stored = logits;

    const std::vector<int32_t> tail = random_tokens(30, hp.n_vocab, 22);
    std::vector<int32_t> branch(prompt.begin(), prompt.begin() + 40);
    branch.insert(branch.end(), tail.begin(), tail.end());
    EXPECT_EQ(cached(branch, logits).reused_tokens, 32);
    expect_near(logits, plain(branch), "resumed from the checkpoint at 32");

    EXPECT_EQ(cached(prompt, logits).reused_tokens, 100);
    EXPECT_EQ(logits, stored);  // the saved logits themselves
    EXPECT_TRUE(warnings.empty());
}

TEST_F(CudaPrefixCache, DecodingFromARestoredStateFollowsTheComputedOne) {
    std::vector<float> logits;
    cached(prompt, logits);             // computes and saves
    ASSERT_EQ(cached(prompt, logits).reused_tokens, 100);  // slot 0 now holds the restored state
    plain(prompt);                                         // slot 1 holds the computed one
    const std::vector<int32_t> next = random_tokens(8, hp.n_vocab, 23);
    std::vector<float> both(2 * static_cast<size_t>(hp.n_vocab));
    for (size_t step = 0; step < next.size(); ++step) {
        const int seqs[] = {0, 1};
        const int32_t tokens[] = {next[step], next[step]};
        backend->decode(seqs, tokens, both);
        expect_near(std::span(both).first(hp.n_vocab), std::span(both).subspan(hp.n_vocab),
                    "decode step " + std::to_string(step));
    }
}

}  // namespace
}  // namespace dendro
