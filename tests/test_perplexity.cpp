// Perplexity: the chunking and scoring rules of llama.cpp (BOS at each chunk start, second halves scored,
// running estimates, the +/- formula) checked against a direct computation on a random model, the input
// errors, and the bundled model's held-out perplexity through `dendro perplexity` against the figure HF
// transformers computed with the same chunks (models/hf/dendro-shakespeare/perplexity.json).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "common/error.h"
#include "model/model.h"
#include "generate/perplexity.h"
#include "random_model.h"
#include "run_command.h"
#include "temp_dir.h"

namespace dendro {
namespace {

constexpr int32_t kBos = 1;
// Relative agreement of two float32 evaluations of the same chunks (summation orders differ).
constexpr double kSameEvaluationTolerance = 1e-5;
// Dendro vs HF transformers on the bundled model: the acceptance bound.
constexpr double kHfAgreement = 0.005;

ModelHparams tiny_hparams() {
    ModelHparams hp;
    hp.n_vocab = 40;
    hp.d_model = 16;
    hp.n_layer = 2;
    hp.d_conv = 4;
    hp.d_inner = 32;
    hp.d_state = 4;
    hp.dt_rank = 2;
    return hp;
}

std::vector<int32_t> random_tokens(size_t n, int64_t n_vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> tokens(n);
    for (auto& t : tokens) t = pick(rng);
    return tokens;
}

// Per-token negative log-likelihoods of one chunk, computed the plain way: the whole chunk prefilled with
// logits at every position, log-softmax in double.
std::vector<double> chunk_nlls(Backend& backend, std::vector<int32_t> chunk, int32_t bos) {
    const size_t n_ctx = chunk.size();
    const int64_t n_vocab = backend.hparams().n_vocab;
    if (bos >= 0) chunk[0] = bos;
    std::vector<float> logits(n_ctx * static_cast<size_t>(n_vocab));
    backend.reset(0);
    backend.prefill(0, chunk, logits, /*all_logits=*/true);
    std::vector<double> nlls;
    for (size_t pos = n_ctx / 2; pos + 1 < n_ctx; ++pos) {
        const float* row = logits.data() + pos * static_cast<size_t>(n_vocab);
        double sum = 0.0;
        for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]));
        nlls.push_back(std::log(sum) - row[chunk[pos + 1]]);
    }
    return nlls;
}

class PerplexityTest : public ::testing::Test {
protected:
    void SetUp() override {
        write_random_mamba_gguf(path, tiny_hparams(), GgmlType::F32, /*seed=*/11, /*tied=*/true);
        model = Model::load(path);
        BackendOptions options;
        options.n_threads = 1;
        backend = make_cpu_backend(*model, options);
    }
    test::TempDir dir;
    std::string path = dir.file("tiny.gguf");
    std::unique_ptr<Model> model;
    std::unique_ptr<Backend> backend;
};

TEST_F(PerplexityTest, MatchesDirectComputationOfLlamaCppRules) {
    const int32_t n_ctx = 16;
    const std::vector<int32_t> tokens = random_tokens(3 * n_ctx + 5, tiny_hparams().n_vocab, 3);  // 3 chunks + tail
    PerplexityOptions options;
    options.n_ctx = n_ctx;
    options.bos = kBos;
    std::vector<int32_t> reported_chunks;
    const PerplexityResult result =
        compute_perplexity(*backend, tokens, options, [&](int32_t chunk, double) { reported_chunks.push_back(chunk); });

    std::vector<double> all;
    std::vector<double> running;
    for (int c = 0; c < 3; ++c) {
        const std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        const std::vector<double> nlls = chunk_nlls(*backend, chunk, kBos);
        ASSERT_EQ(nlls.size(), static_cast<size_t>(n_ctx - 1 - n_ctx / 2));
        all.insert(all.end(), nlls.begin(), nlls.end());
        double sum = 0.0;
        for (const double v : all) sum += v;
        running.push_back(std::exp(sum / static_cast<double>(all.size())));
    }
    double sum = 0.0, sum2 = 0.0;
    for (const double v : all) {
        sum += v;
        sum2 += v * v;
    }
    const double n = static_cast<double>(all.size());
    const double mean = sum / n;
    const double ppl = std::exp(mean);
    const double uncertainty = ppl * std::sqrt((sum2 / n - mean * mean) / (n - 1));

    EXPECT_EQ(result.n_chunks, 3);
    EXPECT_EQ(result.n_scored, static_cast<int64_t>(all.size()));
    EXPECT_EQ(reported_chunks, (std::vector<int32_t>{0, 1, 2}));
    ASSERT_EQ(result.running_ppl.size(), 3u);
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(result.running_ppl[c], running[c], kSameEvaluationTolerance * running[c]);
    EXPECT_NEAR(result.ppl, ppl, kSameEvaluationTolerance * ppl);
    EXPECT_NEAR(result.ppl_uncertainty, uncertainty, kSameEvaluationTolerance * ppl);
    EXPECT_GT(result.ppl_uncertainty, 0.0);
}

TEST_F(PerplexityTest, WithoutBosTheTextsOwnFirstTokensAreKept) {
    const int32_t n_ctx = 8;
    const std::vector<int32_t> tokens = random_tokens(2 * n_ctx, tiny_hparams().n_vocab, 5);
    PerplexityOptions options;
    options.n_ctx = n_ctx;
    const PerplexityResult with_text_tokens = compute_perplexity(*backend, tokens, options);
    std::vector<double> all;
    for (int c = 0; c < 2; ++c) {
        const auto nlls = chunk_nlls(*backend, {tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx}, -1);
        all.insert(all.end(), nlls.begin(), nlls.end());
    }
    double sum = 0.0;
    for (const double v : all) sum += v;
    const double expected = std::exp(sum / static_cast<double>(all.size()));
    EXPECT_NEAR(with_text_tokens.ppl, expected, kSameEvaluationTolerance * expected);
}

TEST_F(PerplexityTest, MaxChunksLimitsTheEvaluation) {
    const int32_t n_ctx = 8;
    const std::vector<int32_t> tokens = random_tokens(5 * n_ctx, tiny_hparams().n_vocab, 9);
    PerplexityOptions options;
    options.n_ctx = n_ctx;
    options.bos = kBos;
    const PerplexityResult all = compute_perplexity(*backend, tokens, options);
    options.max_chunks = 2;
    const PerplexityResult two = compute_perplexity(*backend, tokens, options);
    EXPECT_EQ(all.n_chunks, 5);
    EXPECT_EQ(two.n_chunks, 2);
    EXPECT_EQ(two.n_scored, 2 * (n_ctx - 1 - n_ctx / 2));
    EXPECT_NEAR(two.ppl, all.running_ppl[1], kSameEvaluationTolerance * two.ppl);
}

TEST_F(PerplexityTest, RejectsBadInput) {
    PerplexityOptions options;
    options.n_ctx = 8;
    const auto vocab = tiny_hparams().n_vocab;
    EXPECT_THROW(compute_perplexity(*backend, random_tokens(15, vocab, 1), options), Error);  // < 2 * n_ctx
    std::vector<int32_t> out_of_vocab = random_tokens(16, vocab, 1);
    out_of_vocab[9] = static_cast<int32_t>(vocab);
    EXPECT_THROW(compute_perplexity(*backend, out_of_vocab, options), Error);
    options.n_ctx = kMinPerplexityCtx - 1;
    EXPECT_THROW(compute_perplexity(*backend, random_tokens(64, vocab, 1), options), Error);
    options.n_ctx = 8;
    options.bos = static_cast<int32_t>(vocab);
    EXPECT_THROW(compute_perplexity(*backend, random_tokens(16, vocab, 1), options), Error);
}

// The held-out split the bundled model never saw in training: the last 10 % of tinyshakespeare.
constexpr size_t kHeldOutBytes = 111'539;
// Chunks of the held-out text evaluated here: enough for a stable figure, few enough for a fast test.
constexpr int kBundledPerplexityChunks = 40;

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double final_estimate(const std::string& out) {
    const std::string marker = "Final estimate: PPL = ";
    const size_t at = out.find(marker);
    if (at == std::string::npos) return -1.0;
    return std::stod(out.substr(at + marker.size()));
}

TEST(BundledModelPerplexity, MatchesHfTransformersOnTheHeldOutText) {
    const nlohmann::json reference =
        nlohmann::json::parse(slurp(std::string(DENDRO_MODELS_DIR) + "/hf/dendro-shakespeare/perplexity.json"));
    const auto& full = reference.at("full");
    const int n_ctx = full.at("n_ctx").get<int>();
    const int n_chunks = kBundledPerplexityChunks;
    const double hf_ppl = full.at("chunk_running_ppl").at(n_chunks - 1).get<double>();

    test::TempDir dir;
    const std::string held_out = dir.file("held_out.txt");
    const std::string corpus = slurp(std::string(DENDRO_TEST_DATA) + "/text/tinyshakespeare.txt");
    ASSERT_GT(corpus.size(), kHeldOutBytes);
    std::ofstream(held_out, std::ios::binary) << corpus.substr(corpus.size() - kHeldOutBytes);
    // No -m: the CLI finds the bundled model itself.
    const test::CommandResult run = test::run_command(
        test::shell_quote(DENDRO_EXE) + " perplexity -f " + test::shell_quote(held_out) + " --ctx " + std::to_string(n_ctx) + " --chunks " +
        std::to_string(n_chunks) + " --device cpu");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.out.find("[1]"), std::string::npos) << run.out;
    EXPECT_NE(run.out.find("[" + std::to_string(n_chunks) + "]"), std::string::npos) << run.out;
    const double ppl = final_estimate(run.out);
    EXPECT_NEAR(ppl, hf_ppl, kHfAgreement * hf_ppl) << run.out;
}

TEST(BundledModelPerplexity, CliReportsBadInputAsOneError) {
    test::TempDir dir;
    const std::string short_text = dir.file("short.txt");
    std::ofstream(short_text, std::ios::binary) << "ROMEO:\nBut soft!\n";
    const std::string exe = test::shell_quote(DENDRO_EXE) + " perplexity";
    const test::CommandResult too_short = test::run_command(exe + " -f " + test::shell_quote(short_text));
    EXPECT_NE(too_short.exit_code, 0);
    EXPECT_NE(too_short.err.find("needs at least"), std::string::npos) << too_short.err;
    const test::CommandResult missing = test::run_command(exe + " -f " + test::shell_quote(dir.file("none.txt")));
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("none.txt"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace dendro
