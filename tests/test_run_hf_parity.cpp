// `dendro run` against HF transformers' references (tests/data/hf, see hf_reference.h), through the CLI:
// --temp 0 is plain argmax (HF's greedy continuation), and --logprobs prints, per token, HF's log-softmax of
// the raw logits with the top-N alternatives sorted, generated tokens included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "hf_reference.h"
#include "model/model.h"
#include "run_command.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro {
namespace {

// Our logits are within 1e-3 of HF's (test_hf_parity); a log-softmax moves by at most twice that.
constexpr double kLogprobTolerance = 2e-3;
// Alternatives whose HF logprobs are closer than this may come out in either order.
constexpr double kTieMargin = 2 * kLogprobTolerance;
constexpr int kTopN = 5;

// Exact weights (f32 checkpoints): one BPE and one SentencePiece vocabulary; Mamba-2 with and without a
// binding time_step_limit.
const char* const kFixtures[] = {"mamba_tied_bpe", "mamba_untied_spm", "mamba2_tied_bpe", "mamba2_dtlimit_bpe"};

std::vector<double> log_softmax(const float* logits, size_t n) {
    const double max = *std::max_element(logits, logits + n);
    double sum = 0.0;
    for (size_t v = 0; v < n; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
    std::vector<double> out(n);
    for (size_t v = 0; v < n; ++v) out[v] = static_cast<double>(logits[v]) - max - std::log(sum);
    return out;
}

test::CommandResult run(const std::string& model, const std::string& prompt, const std::string& flags) {
    return test::run_command(test::shell_quote(DENDRO_EXE) + " run -m " + test::shell_quote(model) + " -p " +
                             test::shell_quote(prompt) + " --device cpu -t 1 " + flags);
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
    std::vector<nlohmann::json> lines;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

// Checks a line's "top" against the exact log-probabilities of its position: sorted, and the N best.
void expect_top_is_best(const nlohmann::json& line, const std::vector<double>& logprobs, double tolerance) {
    const nlohmann::json& top = line.at("top");
    ASSERT_EQ(top.size(), static_cast<size_t>(kTopN)) << line;
    std::vector<double> sorted = logprobs;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (size_t k = 0; k < top.size(); ++k) {
        const int32_t id = top[k].at("id");
        const double logprob = top[k].at("logprob");
        if (k > 0) EXPECT_LE(logprob, top[k - 1].at("logprob").get<double>()) << line;
        EXPECT_NEAR(logprob, logprobs[static_cast<size_t>(id)], tolerance) << line;
        // The k-th best by value (an id swap within a near-tie is fine, a missing candidate is not).
        EXPECT_NEAR(logprob, sorted[k], tolerance + kTieMargin) << line;
    }
}

class RunHfParity : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override {
        ref = test::load_hf_reference(GetParam());
        model_path = test::convert_hf_fixture(ref, "f32", tmp);
    }
    test::TempDir tmp;
    test::HfReference ref;
    std::string model_path;
};

TEST_P(RunHfParity, TemperatureZeroIsHfsGreedyContinuation) {
    const auto model = Model::load(model_path);
    const auto tokenizer = Tokenizer::from_gguf(model->gguf());
    for (const test::HfPromptReference& p : ref.prompts) {
        std::vector<int32_t> generated = p.continuation;
        const auto eog = std::find_if(generated.begin(), generated.end(),
                                      [&](int32_t id) { return tokenizer->is_end_of_generation(id); });
        generated.erase(eog, generated.end());
        std::vector<int32_t> whole = p.ids;
        whole.insert(whole.end(), generated.begin(), generated.end());
        // The random weights pick byte tokens that make no characters: printed as U+FFFD.
        const std::string expected =
            p.text + utf8::replace_invalid(tokenizer->decode(whole).substr(tokenizer->decode(p.ids).size())) + "\n";
        const test::CommandResult r = run(model_path, p.text, "--temp 0 -n " + std::to_string(p.continuation.size()));
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, expected) << ref.fixture << ": " << p.text;
    }
}

TEST_P(RunHfParity, LogprobsAreHfsLogSoftmaxWithSortedTopN) {
    const auto model = Model::load(model_path);
    BackendOptions options;
    options.n_threads = 1;
    const auto backend = make_cpu_backend(*model, options);
    const size_t n_vocab = static_cast<size_t>(ref.n_vocab);
    for (const test::HfPromptReference& p : ref.prompts) {
        const int n_new = static_cast<int>(p.continuation.size());
        const test::CommandResult r = run(model_path, p.text,
                                          "--temp 0 -n " + std::to_string(n_new) + " --logprobs " + std::to_string(kTopN));
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const std::vector<nlohmann::json> lines = json_lines(r.out);
        ASSERT_EQ(lines.size(), p.ids.size() + p.continuation.size()) << r.out;

        // Prompt tokens: the first has nothing before it; each later one is scored by HF's logits before it.
        EXPECT_TRUE(lines[0].at("logprob").is_null());
        EXPECT_TRUE(lines[0].at("top").is_null());
        std::vector<int32_t> sequence;
        for (size_t pos = 0; pos < lines.size(); ++pos) {
            const nlohmann::json& line = lines[pos];
            EXPECT_EQ(line.at("pos"), pos);
            const bool prompt = pos < p.ids.size();
            EXPECT_EQ(line.at("source"), prompt ? "prompt" : "generated");
            const int32_t id = line.at("id");
            EXPECT_EQ(id, prompt ? p.ids[pos] : p.continuation[pos - p.ids.size()]) << line;
            sequence.push_back(id);
            if (pos == 0 || pos > p.ids.size()) continue;
            // Position pos - 1's logits predict token pos; HF's last prompt row predicts the first generated one.
            const auto row = std::find(p.logit_positions.begin(), p.logit_positions.end(), static_cast<int64_t>(pos - 1));
            ASSERT_NE(row, p.logit_positions.end());
            const std::vector<double> hf =
                log_softmax(p.logits.data() + static_cast<size_t>(row - p.logit_positions.begin()) * n_vocab, n_vocab);
            EXPECT_NEAR(line.at("logprob").get<double>(), hf[static_cast<size_t>(id)], kLogprobTolerance) << line;
            expect_top_is_best(line, hf, kLogprobTolerance);
        }

        // Generated tokens beyond HF's rows: the library's own logits of the whole sequence, and greedy means
        // each token is its position's most likely one.
        std::vector<float> logits(sequence.size() * n_vocab);
        backend->reset(0);
        backend->prefill(0, sequence, logits, /*all_logits=*/true);
        for (size_t pos = p.ids.size(); pos < lines.size(); ++pos) {
            const std::vector<double> ours = log_softmax(logits.data() + (pos - 1) * n_vocab, n_vocab);
            const nlohmann::json& line = lines[pos];
            const int32_t id = line.at("id");
            EXPECT_NEAR(line.at("logprob").get<double>(), ours[static_cast<size_t>(id)], 1e-4) << line;
            EXPECT_EQ(line.at("top")[0].at("id"), id) << "--temp 0 did not pick the argmax: " << line;
            expect_top_is_best(line, ours, 1e-4);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RunHfParity, ::testing::ValuesIn(kFixtures));

}  // namespace
}  // namespace dendro
