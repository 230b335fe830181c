// The CUDA backend against the CPU backend on 130m-shaped random models (d_model 768, d_inner 1536, dt_rank 48,
// d_state 16; 2 layers and a byte vocabulary keep the CPU side quick), for every weight type the CUDA backend
// computes: prefill at lengths on both sides of every threshold (GEMV/GEMM switch at 16 rows, the scan's
// 128-step chunk, the 256-row logits chunk, the 2,048-token prefill chunk) then decode steps; decode-graph
// replay after a state restore and after a fork; decode batches 1, 3, 16, 17 and 64 (GEMV and fused
// conv/x_proj up to 16, several channel slices per block at 16, cuBLAS inside the graph above); and device
// sampling (temperature, top-k, top-p) through generate().
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "generate/generation.h"
#include "model/model.h"
#include "random_model_file.h"
#include "tokenizer/tokenizer.h"

namespace dendro {
namespace {

using test::argmax;
using test::clear_winner;
using test::expect_logits_near;
using test::expect_states_near;
using test::logits_tolerance;
using test::random_tokens;

ModelHparams hparams_130m_width() {
    ModelHparams hp = test::tiny_hparams_byte_vocab();
    hp.d_model = 768;
    hp.d_inner = 1536;
    hp.d_state = 16;
    hp.dt_rank = 48;  // not a multiple of 32: a Q8_0 file keeps dt_proj in F16
    hp.n_layer = 2;
    return hp;
}

class CudaShape130m : public ::testing::TestWithParam<GgmlType> {
protected:
    static constexpr int kSlots = 66;

    void SetUp() override {
        DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
        file_ = std::make_unique<test::TempModelFile>(hparams_130m_width(), GetParam(), 11, true,
                                                      test::byte_tokenizer_options());
        model_ = Model::load(file_->path());
        BackendOptions options;
        options.n_seq_max = kSlots;
        options.n_threads = 8;
        cpu_ = make_backend(DeviceKind::Cpu, *model_, options);
        cuda_ = make_backend(DeviceKind::Cuda, *model_, options);
        n_vocab_ = model_->hparams().n_vocab;
        tolerance_ = logits_tolerance(GetParam());
    }

    std::vector<float> prefill(Backend& backend, int seq, const std::vector<int32_t>& tokens, bool all = false) {
        std::vector<float> logits((all ? tokens.size() : 1) * n_vocab_);
        backend.prefill(seq, tokens, logits, all);
        return logits;
    }

    // One decode step of `seqs` on both backends with the same tokens, the logits compared row by row.
    void decode_both(const std::vector<int>& seqs, const std::vector<int32_t>& tokens, const std::string& what,
                     std::vector<float>* cuda_out = nullptr, std::vector<float>* cpu_out = nullptr) {
        std::vector<float> cpu_logits(seqs.size() * n_vocab_), cuda_logits(seqs.size() * n_vocab_);
        cpu_->decode(seqs, tokens, cpu_logits);
        cuda_->decode(seqs, tokens, cuda_logits);
        for (size_t i = 0; i < seqs.size(); ++i) {
            expect_logits_near(std::span(cuda_logits).subspan(i * n_vocab_, n_vocab_),
                               std::span(cpu_logits).subspan(i * n_vocab_, n_vocab_), tolerance_,
                               concat(what, " sequence ", seqs[i]));
        }
        if (cuda_out != nullptr) *cuda_out = std::move(cuda_logits);
        if (cpu_out != nullptr) *cpu_out = std::move(cpu_logits);
    }

    std::unique_ptr<test::TempModelFile> file_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Backend> cpu_, cuda_;
    int64_t n_vocab_ = 0;
    float tolerance_ = 0.0f;
};

TEST_P(CudaShape130m, PrefillAroundEveryThresholdThenDecode) {
    for (const size_t n : {1, 2, 15, 16, 17, 127, 128, 129, 255, 256, 257, 2047, 2048, 2049}) {
        const auto tokens = random_tokens(n, n_vocab_, static_cast<uint32_t>(n));
        cpu_->reset(0);
        cuda_->reset(0);
        std::vector<float> cpu_logits = prefill(*cpu_, 0, tokens), cuda_logits = prefill(*cuda_, 0, tokens);
        expect_logits_near(cuda_logits, cpu_logits, tolerance_, concat("prefill of ", n, " tokens"));
        SequenceState cpu_state, cuda_state;
        cpu_->read_state(0, cpu_state);
        cuda_->read_state(0, cuda_state);
        expect_states_near(cuda_state, cpu_state, tolerance_, concat("state after ", n, " tokens"));
        for (int step = 0; step < 3; ++step) {
            const int32_t token = argmax(cpu_logits);
            decode_both({0}, {token}, concat("decode step ", step, " after ", n, " tokens"), &cuda_logits,
                        &cpu_logits);
        }
    }
}

TEST_P(CudaShape130m, AllLogitsAcrossTheLogitsChunk) {
    const auto tokens = random_tokens(257, n_vocab_, 3);
    cpu_->reset(1);
    cuda_->reset(1);
    const auto expected = prefill(*cpu_, 1, tokens, true);
    const auto actual = prefill(*cuda_, 1, tokens, true);
    for (size_t t = 0; t < tokens.size(); ++t) {
        expect_logits_near(std::span(actual).subspan(t * n_vocab_, n_vocab_),
                           std::span(expected).subspan(t * n_vocab_, n_vocab_), tolerance_, concat("position ", t));
    }
}

TEST_P(CudaShape130m, GraphReplayAfterARestoreAndAfterAFork) {
    const int seq = 2, fork = 3;
    const auto prompt = random_tokens(20, n_vocab_, 4);
    cpu_->reset(seq);
    cuda_->reset(seq);
    prefill(*cpu_, seq, prompt);
    prefill(*cuda_, seq, prompt);
    const auto warmup = random_tokens(4, n_vocab_, 5);  // captures the batch-1 graph
    for (const int32_t token : warmup) decode_both({seq}, {token}, "warm-up step");

    SequenceState cuda_saved, cpu_saved;
    cuda_->read_state(seq, cuda_saved);
    cpu_->read_state(seq, cpu_saved);
    const auto steps = random_tokens(3, n_vocab_, 6);
    std::vector<std::vector<float>> first(steps.size());
    for (size_t i = 0; i < steps.size(); ++i) decode_both({seq}, {steps[i]}, concat("step ", i), &first[i]);

    // Restore: the replayed graph reads the written state, so the same tokens give the same bits again.
    cuda_->write_state(seq, cuda_saved);
    cpu_->write_state(seq, cpu_saved);
    for (size_t i = 0; i < steps.size(); ++i) {
        std::vector<float> again;
        decode_both({seq}, {steps[i]}, concat("step ", i, " after the restore"), &again);
        ASSERT_EQ(again, first[i]) << "step " << i << " after the restore differs from the first run";
    }

    // Fork: both slots then step together (the batch-2 graph) with the same token, then with different ones.
    cuda_->copy_state(seq, fork);
    cpu_->copy_state(seq, fork);
    std::vector<float> both;
    decode_both({seq, fork}, {7, 7}, "forked step, same token", &both);
    ASSERT_TRUE(std::equal(both.begin(), both.begin() + n_vocab_, both.begin() + n_vocab_))
        << "a fork fed the same token must give the same logits as its source";
    for (int step = 0; step < 3; ++step) {
        decode_both({fork, seq}, {static_cast<int32_t>(10 + step), static_cast<int32_t>(20 + step)},
                    concat("forked step ", step));
    }
}

TEST_P(CudaShape130m, DecodeBatchesAroundEverySwitch) {
    for (const int batch : {1, 3, 16, 17, 64}) {
        std::vector<int> seqs(batch);
        for (int i = 0; i < batch; ++i) seqs[i] = (i * 17 + 1) % kSlots;  // 17 is coprime with 66
        for (const int seq : seqs) {
            const auto prompt = random_tokens(2 + seq % 19, n_vocab_, 300 + seq);
            cpu_->reset(seq);
            cuda_->reset(seq);
            prefill(*cpu_, seq, prompt);
            prefill(*cuda_, seq, prompt);
        }
        for (int step = 0; step < 2; ++step) {
            const auto tokens = random_tokens(seqs.size(), n_vocab_, 400 + step);
            decode_both(seqs, tokens, concat("batch ", batch, " step ", step));
        }
    }
}

// Device sampling through generate(): reproducible for a seed, and every drawn token is one the CPU's
// logits allow (inside the top k and the top-p nucleus, with the logits tolerance as slack).
TEST_P(CudaShape130m, DeviceSamplingThroughGenerate) {
    const auto tokenizer = Tokenizer::from_gguf(model_->gguf());
    SamplingParams params;
    params.temperature = 0.8f;
    params.top_k = 5;
    params.top_p = 0.9f;
    params.min_p = 0.0f;  // min-p and the repetition penalty would send sampling to the host
    params.repeat_penalty = 1.0f;
    params.seed = 7;
    const auto prompt = random_tokens(12, n_vocab_, 8);
    const int seq = 4;
    auto run = [&] {
        cuda_->reset(seq);
        const auto logits = prefill(*cuda_, seq, prompt);
        return generate(*cuda_, *tokenizer, seq, logits, prompt, params, 24, [](std::string_view) {},
                        /*stop_at_eog=*/false)
            .tokens;
    };
    const std::vector<int32_t> tokens = run();
    ASSERT_EQ(tokens.size(), 24u);
    EXPECT_EQ(run(), tokens) << "the same seed from the same state must draw the same tokens";

    cpu_->reset(seq);
    std::vector<float> logits = prefill(*cpu_, seq, prompt);
    for (size_t i = 0; i < tokens.size(); ++i) {
        // Probabilities at the sampling temperature, from the CPU's logits; `slack` covers the GPU's rounding.
        const float top = *std::max_element(logits.begin(), logits.end());
        float scale = 1.0f;
        for (float l : logits) scale = std::max(scale, std::fabs(l));
        const float slack = 2.0f * tolerance_ * scale;
        const float drawn = logits[tokens[i]];
        const auto better = std::count_if(logits.begin(), logits.end(), [&](float l) { return l > drawn + slack; });
        EXPECT_LT(better, params.top_k) << "token " << i << " is outside the top " << params.top_k;
        double total = 0.0, above = 0.0;
        for (float l : logits) {
            const double p = std::exp((l - top) / params.temperature);
            total += p;
            if (l > drawn + slack) above += p;
        }
        EXPECT_LT(above / total, params.top_p) << "token " << i << " is outside the top-p nucleus";
        const int32_t token = tokens[i];
        cpu_->decode({&seq, 1}, {&token, 1}, logits);
    }
}

TEST_P(CudaShape130m, TopKOneThroughGenerateIsTheCpuGreedyChoice) {
    const auto tokenizer = Tokenizer::from_gguf(model_->gguf());
    SamplingParams params;
    params.temperature = 1.0f;
    params.top_k = 1;
    params.min_p = 0.0f;
    params.repeat_penalty = 1.0f;
    const auto prompt = random_tokens(9, n_vocab_, 9);
    const int seq = 5;
    cuda_->reset(seq);
    const auto tokens = generate(*cuda_, *tokenizer, seq, prefill(*cuda_, seq, prompt), prompt, params, 16,
                                 [](std::string_view) {}, /*stop_at_eog=*/false)
                            .tokens;
    cpu_->reset(seq);
    std::vector<float> logits = prefill(*cpu_, seq, prompt);
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (clear_winner(logits, tolerance_)) ASSERT_EQ(tokens[i], argmax(logits)) << "token " << i;
        const int32_t token = tokens[i];  // follow the GPU's choice, so that a near tie cannot diverge
        cpu_->decode({&seq, 1}, {&token, 1}, logits);
    }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, CudaShape130m,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0),
                         [](const auto& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace dendro

#else

TEST(CudaShape130m, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
