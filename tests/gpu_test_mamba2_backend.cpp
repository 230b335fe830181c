// The CUDA backend on Mamba-2 models against the CPU backend (the numerical reference) and HF's own logits:
// random models with mamba2-130m's layer shape (d_model 768, 24 heads of 64, d_state 128, one group; two
// layers and a small vocabulary to keep the CPU side quick) in every weight type the CUDA backend takes, a
// Codestral-like 8-group layer and a tiny odd one (head_dim 4, d_state 7, 3 groups, a binding time-step clamp,
// biases); prompt lengths around the SSD chunk (1, chunk-1, chunk, chunk+1, several chunks, across the
// 2,048-token prefill pass), every position's logits, greedy decoding, a resume from a state saved mid-chunk,
// a fork, batched decode of 1, 3 and 17 sequences over scattered slots, on-device greedy sampling; the
// tests/data/hf Mamba-2 fixtures' logits and greedy continuations.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "cuda_backend.h"
#include "hf_reference.h"
#include "mamba2/ssd_prefill.h"
#include "model/model.h"
#include "random_model_file.h"
#include "temp_dir.h"

namespace dendro {
namespace {

// Largest |difference| of logits allowed, relative to the largest |logit| (at least 1). The SSD's products
// run on fp16 tensor cores whatever the weight type, so even F32 models differ from the CPU at the 16-bit
// level there; 16-bit weights add the prefill GEMMs' rounding of activations (docs/cuda-notes.md).
float logits_tolerance(GgmlType type) {
    switch (type) {
        case GgmlType::BF16: return 5e-2f;
        default: return 2e-2f;
    }
}

constexpr int64_t kChunk = cuda::kDefaultSsdChunk;

std::vector<int32_t> random_tokens(size_t n, int64_t n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = dist(rng);
    return tokens;
}

int32_t argmax(std::span<const float> logits) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void expect_logits_near(std::span<const float> actual, std::span<const float> expected, float tolerance,
                        const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    float scale = 1.0f;
    for (float e : expected) scale = std::max(scale, std::fabs(e));
    for (size_t i = 0; i < actual.size(); ++i) {
        ASSERT_TRUE(std::isfinite(actual[i])) << what << " logit " << i;
        ASSERT_NEAR(actual[i], expected[i], tolerance * scale) << what << " logit " << i;
    }
}

void expect_states_near(const SequenceState& a, const SequenceState& b, float tolerance, const std::string& what) {
    ASSERT_EQ(a.shape, b.shape) << what;
    ASSERT_EQ(a.conv.size(), b.conv.size()) << what;
    ASSERT_EQ(a.ssm.size(), b.ssm.size()) << what;
    float scale = 1.0f;
    for (float v : b.ssm) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < a.conv.size(); ++i) {
        ASSERT_NEAR(a.conv[i], b.conv[i], tolerance * (1.0f + std::fabs(b.conv[i]))) << what << " conv " << i;
    }
    for (size_t i = 0; i < a.ssm.size(); ++i) ASSERT_NEAR(a.ssm[i], b.ssm[i], tolerance * scale) << what << " ssm " << i;
}

// Whether the best logit beats the runner-up by more than the tolerance (a choice the GPU must make too).
bool clear_winner(std::span<const float> logits, float tolerance) {
    std::vector<float> sorted(logits.begin(), logits.end());
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    float scale = 1.0f;
    for (float l : logits) scale = std::max(scale, std::fabs(l));
    return sorted[0] - sorted[1] > 2.0f * tolerance * scale;
}

ModelHparams mamba2_hparams(int64_t d_model, int64_t head_dim, int64_t d_state, int64_t n_group, int64_t n_vocab) {
    ModelHparams hp;
    hp.arch = Architecture::Mamba2;
    hp.n_vocab = n_vocab;
    hp.d_model = d_model;
    hp.n_layer = 2;
    hp.d_conv = 4;
    hp.d_state = d_state;
    hp.n_group = n_group;
    hp.head_dim = head_dim;
    hp.d_inner = 2 * d_model;
    hp.n_head = hp.d_inner / head_dim;
    return hp;
}

ModelHparams mamba2_130m_layers() { return mamba2_hparams(768, 64, 128, 1, 512); }

struct ModelCase {
    std::string name;
    ModelHparams hp;
    GgmlType type = GgmlType::F16;
    bool tied = true;
    RandomModelOptions options;
};

void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

std::vector<ModelCase> cases() {
    std::vector<ModelCase> all;
    for (const GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0}) {
        all.push_back({concat("mamba2_130m_layers_", ggml_type_name(type)), mamba2_130m_layers(), type, true, {}});
    }
    all.push_back({"codestral_groups_F16", mamba2_hparams(256, 64, 128, 8, 300), GgmlType::F16, false, {}});
    // 3 groups of 5 heads of 4 channels, d_state 7.
    ModelCase odd{"odd_clamped_biases_F32", mamba2_hparams(30, 4, 7, 3, 67), GgmlType::F32, false, {}};
    odd.hp.time_step_min = 0.02f;  // the random dt spans [1e-3, 1e-1]: both ends bind
    odd.hp.time_step_max = 0.05f;
    odd.options.proj_bias = true;
    odd.options.conv_3d = true;
    all.push_back(odd);
    return all;
}

class CudaMamba2Parity : public ::testing::TestWithParam<ModelCase> {
protected:
    static constexpr int kSlots = 20;

    void SetUp() override {
        DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
        const ModelCase& c = GetParam();
        file_ = std::make_unique<test::TempModelFile>(c.hp, c.type, 7, c.tied, c.options);
        model_ = Model::load(file_->path());
        ASSERT_TRUE(cuda_supports(*model_)) << c.name;
        BackendOptions options;
        options.n_seq_max = kSlots;
        options.n_threads = 4;
        cpu_ = make_backend(DeviceKind::Cpu, *model_, options);
        cuda_ = make_backend(DeviceKind::Cuda, *model_, options);
        n_vocab_ = model_->hparams().n_vocab;
        tolerance_ = logits_tolerance(c.type);
    }

    std::vector<float> prefill(Backend& backend, int seq, std::span<const int32_t> tokens, bool all = false) {
        std::vector<float> logits((all ? tokens.size() : 1) * n_vocab_);
        backend.prefill(seq, tokens, logits, all);
        return logits;
    }
    std::vector<float> decode(Backend& backend, const std::vector<int>& seqs, const std::vector<int32_t>& tokens) {
        std::vector<float> logits(seqs.size() * n_vocab_);
        backend.decode(seqs, tokens, logits);
        return logits;
    }
    void expect_same_state(int seq, const std::string& what) {
        SequenceState cpu_state, cuda_state;
        cpu_->read_state(seq, cpu_state);
        cuda_->read_state(seq, cuda_state);
        expect_states_near(cuda_state, cpu_state, tolerance_, what);
    }

    std::unique_ptr<test::TempModelFile> file_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Backend> cpu_, cuda_;
    int64_t n_vocab_ = 0;
    float tolerance_ = 0.0f;
};

TEST_P(CudaMamba2Parity, PrefillAroundChunkBoundariesMatchesCpu) {
    // 2100 crosses the backend's 2,048-token prefill pass, where the SSD chunks restart.
    for (const int64_t n : {int64_t{1}, kChunk - 1, kChunk, kChunk + 1, 3 * kChunk + 5, int64_t{2100}}) {
        const auto tokens = random_tokens(static_cast<size_t>(n), n_vocab_, static_cast<uint32_t>(n));
        cpu_->reset(0);
        cuda_->reset(0);
        expect_logits_near(prefill(*cuda_, 0, tokens), prefill(*cpu_, 0, tokens), tolerance_,
                           concat("prefill of ", n, " tokens"));
        expect_same_state(0, concat("state after ", n, " tokens"));
    }
}

TEST_P(CudaMamba2Parity, EveryPositionsLogitsMatchCpu) {
    const auto tokens = random_tokens(2 * kChunk + 9, n_vocab_, 1);
    cpu_->reset(1);
    cuda_->reset(1);
    const auto expected = prefill(*cpu_, 1, tokens, true), actual = prefill(*cuda_, 1, tokens, true);
    for (size_t t = 0; t < tokens.size(); ++t) {
        expect_logits_near(std::span(actual).subspan(t * n_vocab_, n_vocab_),
                           std::span(expected).subspan(t * n_vocab_, n_vocab_), tolerance_, concat("position ", t));
    }
}

TEST_P(CudaMamba2Parity, GreedyDecodeMatchesCpu) {
    const auto prompt = random_tokens(kChunk + 3, n_vocab_, 2);
    cpu_->reset(2);
    cuda_->reset(2);
    std::vector<float> cpu_logits = prefill(*cpu_, 2, prompt), cuda_logits = prefill(*cuda_, 2, prompt);
    const int seq = 2;
    for (int step = 0; step < 24; ++step) {
        int32_t token = argmax(cpu_logits);
        if (clear_winner(cpu_logits, tolerance_)) ASSERT_EQ(argmax(cuda_logits), token) << "step " << step;
        cpu_logits = decode(*cpu_, {seq}, {token});  // both go on with the CPU's choice
        cuda_logits = decode(*cuda_, {seq}, {token});
        expect_logits_near(cuda_logits, cpu_logits, tolerance_, concat("decode step ", step));
    }
    expect_same_state(seq, "state after decoding");
}

// A state saved mid-chunk on the CPU, restored on the GPU, prefilled on: the uninterrupted CPU run.
TEST_P(CudaMamba2Parity, ResumesFromAStateSavedMidPrompt) {
    const auto prompt = random_tokens(3 * kChunk + 11, n_vocab_, 3);
    const size_t split = kChunk + 17;
    cpu_->reset(3);
    const auto expected = prefill(*cpu_, 3, prompt);
    cpu_->reset(4);
    prefill(*cpu_, 4, std::span(prompt).first(split));
    SequenceState saved;
    cpu_->read_state(4, saved);
    cuda_->write_state(5, saved);
    const auto resumed = prefill(*cuda_, 5, std::span(prompt).subspan(split));
    expect_logits_near(resumed, expected, tolerance_, "resumed prefill");
    // The GPU's own split run too.
    cuda_->reset(6);
    prefill(*cuda_, 6, std::span(prompt).first(split));
    expect_logits_near(prefill(*cuda_, 6, std::span(prompt).subspan(split)), expected, tolerance_, "split prefill");
}

TEST_P(CudaMamba2Parity, ForkedSlotsContinueIndependently) {
    const auto prompt = random_tokens(kChunk + 5, n_vocab_, 4);
    for (Backend* b : {cpu_.get(), cuda_.get()}) {
        b->reset(7);
        prefill(*b, 7, prompt);
        b->copy_state(7, 8);
    }
    for (int step = 0; step < 4; ++step) {
        const std::vector<int> seqs = {7, 8};
        const std::vector<int32_t> tokens = random_tokens(2, n_vocab_, 40 + step);
        const auto expected = decode(*cpu_, seqs, tokens), actual = decode(*cuda_, seqs, tokens);
        expect_logits_near(actual, expected, tolerance_, concat("fork step ", step));
    }
    expect_same_state(8, "forked state");
}

TEST_P(CudaMamba2Parity, BatchedDecodeOverScatteredSlotsMatchesCpu) {
    for (const int batch : {1, 3, 17}) {  // GEMV projections up to 16 rows, cuBLAS GEMMs from 17
        std::vector<int> seqs;
        for (int i = 0; i < batch; ++i) seqs.push_back((i * 7 + 3) % kSlots);  // 7 is coprime with 20
        for (int seq : seqs) {
            const auto prompt = random_tokens(static_cast<size_t>(3 + seq * 5), n_vocab_, 100 + seq);
            cpu_->reset(seq);
            cuda_->reset(seq);
            prefill(*cpu_, seq, prompt);
            prefill(*cuda_, seq, prompt);
        }
        for (int step = 0; step < 3; ++step) {
            const auto tokens = random_tokens(seqs.size(), n_vocab_, 200 + step);
            const auto expected = decode(*cpu_, seqs, tokens), actual = decode(*cuda_, seqs, tokens);
            for (size_t i = 0; i < seqs.size(); ++i) {
                expect_logits_near(std::span(actual).subspan(i * n_vocab_, n_vocab_),
                                   std::span(expected).subspan(i * n_vocab_, n_vocab_), tolerance_,
                                   concat("batch ", batch, " step ", step, " sequence ", seqs[i]));
            }
        }
    }
}

TEST_P(CudaMamba2Parity, OnDeviceGreedySamplingPicksTheArgmax) {
    const std::vector<int> seqs = {0, 9, 4};
    for (int seq : seqs) {
        cuda_->reset(seq);
        prefill(*cuda_, seq, random_tokens(kChunk + seq, n_vocab_, 300 + seq));
    }
    // The same step twice from the same states: once returning logits, once sampling greedily on the device.
    std::vector<SequenceState> saved(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) cuda_->read_state(seqs[i], saved[i]);
    const auto tokens = random_tokens(seqs.size(), n_vocab_, 400);
    const auto logits = decode(*cuda_, seqs, tokens);
    for (size_t i = 0; i < seqs.size(); ++i) cuda_->write_state(seqs[i], saved[i]);
    std::vector<int32_t> sampled(seqs.size());
    DeviceSampling greedy;
    greedy.temperature = 0.0f;
    ASSERT_TRUE(cuda_->decode_sample(seqs, tokens, greedy, sampled));
    for (size_t i = 0; i < seqs.size(); ++i) {
        EXPECT_EQ(sampled[i], argmax(std::span(logits).subspan(i * n_vocab_, n_vocab_))) << "sequence " << seqs[i];
    }
}

INSTANTIATE_TEST_SUITE_P(RandomModels, CudaMamba2Parity, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<ModelCase>& info) { return info.param.name; });

// ---- HF fixtures ----

// HF's fp32 logits against the GPU on the exact weights: the fp16 SSD products bound the agreement.
constexpr float kHfRelativeTolerance = 2e-2f;

class CudaMamba2HfFixture : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override { DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device"); }
    test::TempDir dir_;
};

TEST_P(CudaMamba2HfFixture, MatchesHfLogitsAndGreedyContinuation) {
    const test::HfReference ref = test::load_hf_reference(GetParam());
    const std::string outtype = ref.stored_dtype == "float16" ? "f16" : ref.stored_dtype == "bfloat16" ? "bf16" : "f32";
    const auto model = Model::load(test::convert_hf_fixture(ref, outtype, dir_));
    ASSERT_TRUE(cuda_supports(*model)) << GetParam();
    auto cuda = make_backend(DeviceKind::Cuda, *model, BackendOptions{});
    const int64_t n_vocab = model->hparams().n_vocab;
    for (const test::HfPromptReference& p : ref.prompts) {
        std::vector<float> logits(p.ids.size() * n_vocab);
        cuda->reset(0);
        cuda->prefill(0, p.ids, logits, true);
        for (size_t k = 0; k < p.logit_positions.size(); ++k) {
            expect_logits_near(std::span(logits).subspan(p.logit_positions[k] * n_vocab, ref.n_vocab),
                               std::span(p.logits).subspan(k * ref.n_vocab, ref.n_vocab), kHfRelativeTolerance,
                               concat(GetParam(), " position ", p.logit_positions[k]));
        }
        std::vector<float> step_logits(n_vocab);
        int32_t token = argmax(std::span(logits).subspan((p.ids.size() - 1) * n_vocab, n_vocab));
        const int seq = 0;
        for (size_t i = 0; i < p.continuation.size(); ++i) {
            ASSERT_EQ(token, p.continuation[i]) << GetParam() << ": " << p.text << " continuation token " << i;
            cuda->decode({&seq, 1}, {&token, 1}, step_logits);
            token = argmax(step_logits);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaMamba2HfFixture,
                         ::testing::Values("mamba2_tied_bpe", "mamba2_groups_spm", "mamba2_dtlimit_bpe",
                                           "mamba2_codestral_v3"));

TEST(CudaMamba2Support, AutoPicksTheGpuForMamba2) {
    DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
    const test::TempModelFile file(mamba2_hparams(64, 16, 16, 2, 40), GgmlType::F16);
    const auto model = Model::load(file.path());
    EXPECT_TRUE(cuda_supports(*model));
    EXPECT_NE(make_backend(DeviceKind::Auto, *model, BackendOptions{})->name().find("cuda"), std::string::npos);
}

}  // namespace
}  // namespace dendro

#else

TEST(CudaMamba2Parity, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
