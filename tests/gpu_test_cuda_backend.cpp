// The CUDA backend end to end against the CPU backend (the numerical reference) on random models of every
// weight type and HF's own logits on the converter's fixtures: prefill logits (last and all positions, across
// the prefill chunk), greedy generation, batched decode over scattered slots, on-device greedy sampling, state
// transfer, prefill-then-decode = stepwise decode, and resumed prefill = uninterrupted prefill.
#include <gtest/gtest.h>

#include "backend/backend.h"

#include "gpu_test_support.h"

#ifdef DENDRO_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "hf_converter.h"
#include "model/model.h"
#include "random_model_file.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::argmax;
using test::clear_winner;
using test::expect_logits_near;
using test::expect_states_near;
using test::logits_tolerance;
using test::random_tokens;

struct ModelCase {
    const char* name;
    GgmlType type;
    bool q8_shape;
    bool tied;
    RandomModelOptions options;
    bool falcon;
};

class CudaBackendParity : public ::testing::TestWithParam<ModelCase> {
protected:
    static constexpr int kSlots = 70;  // room for a decode batch above the largest graph (64)

    void SetUp() override {
        DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
        const ModelCase& c = GetParam();
        ModelHparams hp = c.q8_shape ? test::tiny_hparams_q8() : test::tiny_hparams_any_length();
        hp.dt_b_c_rms = c.falcon;
        file_ = std::make_unique<test::TempModelFile>(hp, c.type, 3, c.tied, c.options);
        model_ = Model::load(file_->path());
        BackendOptions options;
        options.n_seq_max = kSlots;
        options.n_threads = 2;
        cpu_ = make_backend(DeviceKind::Cpu, *model_, options);
        cuda_ = make_backend(DeviceKind::Cuda, *model_, options);
        n_vocab_ = model_->hparams().n_vocab;
        tolerance_ = logits_tolerance(c.type);
    }

    std::vector<float> prefill(Backend& backend, int seq, const std::vector<int32_t>& tokens, bool all = false) {
        std::vector<float> logits((all ? tokens.size() : 1) * n_vocab_);
        backend.prefill(seq, tokens, logits, all);
        return logits;
    }

    std::unique_ptr<test::TempModelFile> file_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Backend> cpu_, cuda_;
    int64_t n_vocab_ = 0;
    float tolerance_ = 0.0f;
};

TEST_P(CudaBackendParity, PrefillLogitsMatchCpu) {
    for (size_t n : {1, 7, 100, 2100}) {  // 2100 crosses the 2048-token prefill chunk
        const auto tokens = random_tokens(n, n_vocab_, static_cast<uint32_t>(n));
        cpu_->reset(0);
        cuda_->reset(0);
        expect_logits_near(prefill(*cuda_, 0, tokens), prefill(*cpu_, 0, tokens), tolerance_,
                           concat("prefill of ", n, " tokens"));
        SequenceState cpu_state, cuda_state;
        cpu_->read_state(0, cpu_state);
        cuda_->read_state(0, cuda_state);
        expect_states_near(cuda_state, cpu_state, tolerance_, concat("state after ", n, " tokens"));
    }
}

TEST_P(CudaBackendParity, AllLogitsMatchCpu) {
    const auto tokens = random_tokens(300, n_vocab_, 1);
    cpu_->reset(1);
    cuda_->reset(1);
    const auto expected = prefill(*cpu_, 1, tokens, true);
    const auto actual = prefill(*cuda_, 1, tokens, true);
    for (size_t t = 0; t < tokens.size(); ++t) {
        expect_logits_near(std::span(actual).subspan(t * n_vocab_, n_vocab_),
                           std::span(expected).subspan(t * n_vocab_, n_vocab_), tolerance_, concat("position ", t));
    }
}

TEST_P(CudaBackendParity, GreedyGenerationMatchesCpu) {
    const auto prompt = random_tokens(20, n_vocab_, 2);
    cpu_->reset(2);
    cuda_->reset(2);
    std::vector<float> cpu_logits = prefill(*cpu_, 2, prompt), cuda_logits = prefill(*cuda_, 2, prompt);
    const int seq = 2;
    int clear_choices = 0;
    for (int step = 0; step < 32; ++step) {
        int32_t token = argmax(cpu_logits);
        if (clear_winner(cpu_logits, tolerance_)) {
            ASSERT_EQ(argmax(cuda_logits), token) << "step " << step;
            ++clear_choices;
        }
        // Both continue with the CPU's choice, so a near tie cannot make the sequences diverge.
        cpu_->decode({&seq, 1}, {&token, 1}, cpu_logits);
        cuda_->decode({&seq, 1}, {&token, 1}, cuda_logits);
        expect_logits_near(cuda_logits, cpu_logits, tolerance_, concat("decode step ", step));
    }
    EXPECT_GT(clear_choices, 16) << "too many near ties for the comparison to mean anything";
}

TEST_P(CudaBackendParity, BatchedDecodeOverScatteredSlotsMatchesCpu) {
    // Around each switch: GEMV up to 16 rows, cuBLAS GEMMs (captured in the decode graph, on reserved
    // scratch) from 17, one graph up to 64, several graphs above; scrambled slots with different pasts.
    for (const int batch : {1, 3, 16, 17, 64, 66}) {
        std::vector<int> seqs;
        for (int i = 0; i < batch; ++i) seqs.push_back((i * 37 + 5) % kSlots);  // 37 is coprime with 70
        for (int seq : seqs) {
            const auto prompt = random_tokens(3 + seq % 11, n_vocab_, 100 + seq);
            cpu_->reset(seq);
            cuda_->reset(seq);
            prefill(*cpu_, seq, prompt);
            prefill(*cuda_, seq, prompt);
        }
        for (int step = 0; step < 3; ++step) {
            const auto tokens = random_tokens(seqs.size(), n_vocab_, 200 + step);
            std::vector<float> cpu_logits(seqs.size() * n_vocab_), cuda_logits(seqs.size() * n_vocab_);
            cpu_->decode(seqs, tokens, cpu_logits);
            cuda_->decode(seqs, tokens, cuda_logits);
            for (size_t i = 0; i < seqs.size(); ++i) {
                expect_logits_near(std::span(cuda_logits).subspan(i * n_vocab_, n_vocab_),
                                   std::span(cpu_logits).subspan(i * n_vocab_, n_vocab_), tolerance_,
                                   concat("batch ", batch, " step ", step, " sequence ", seqs[i]));
            }
        }
    }
}

TEST_P(CudaBackendParity, DeviceGreedySamplingPicksTheArgmax) {
    const auto prompt = random_tokens(9, n_vocab_, 3);
    for (int seq : {3, 4}) {
        cuda_->reset(seq);
        prefill(*cuda_, seq, prompt);
    }
    int32_t token = prompt.back();
    std::vector<float> logits(n_vocab_);
    for (int step = 0; step < 8; ++step) {
        const int logits_seq = 3, sampled_seq = 4;
        cuda_->decode({&logits_seq, 1}, {&token, 1}, logits);
        int32_t sampled = -1;
        ASSERT_TRUE(cuda_->decode_sample({&sampled_seq, 1}, {&token, 1}, DeviceSampling{}, {&sampled, 1}));
        ASSERT_EQ(sampled, argmax(logits)) << "step " << step;
        token = sampled;
    }
}

TEST_P(CudaBackendParity, PrefillThenDecodeStateEqualsStepwiseDecode) {
    const auto tokens = random_tokens(40, n_vocab_, 4);
    const int stepwise = 6, prefilled = 5;
    cuda_->reset(stepwise);
    cuda_->reset(prefilled);
    std::vector<float> logits(n_vocab_);
    for (int32_t token : tokens) cuda_->decode({&stepwise, 1}, {&token, 1}, logits);
    const auto prefill_logits = prefill(*cuda_, prefilled, tokens);
    expect_logits_near(prefill_logits, logits, tolerance_, "last logits");
    SequenceState a, b;
    cuda_->read_state(stepwise, a);
    cuda_->read_state(prefilled, b);
    expect_states_near(b, a, tolerance_, "prefill vs stepwise state");
}

TEST_P(CudaBackendParity, ResumedPrefillEqualsUninterruptedPrefill) {
    const auto tokens = random_tokens(300, n_vocab_, 5);
    const int whole = 7, split = 8;
    cuda_->reset(whole);
    const auto expected = prefill(*cuda_, whole, tokens);
    SequenceState expected_state;
    cuda_->read_state(whole, expected_state);
    for (size_t cut : {1, 17, 128, 299}) {
        cuda_->reset(split);
        prefill(*cuda_, split, std::vector<int32_t>(tokens.begin(), tokens.begin() + cut));
        // Resume from a state that went through the host, as a cache would store it.
        SequenceState saved;
        cuda_->read_state(split, saved);
        cuda_->reset(split);
        cuda_->write_state(split, saved);
        const auto logits = prefill(*cuda_, split, std::vector<int32_t>(tokens.begin() + cut, tokens.end()));
        // Short pieces take the GEMV path (fp32 activations), long ones the GEMM (16-bit activations for 16-bit
        // weights), hence the type's tolerance.
        expect_logits_near(logits, expected, tolerance_, concat("cut at ", cut));
        SequenceState state;
        cuda_->read_state(split, state);
        expect_states_near(state, expected_state, tolerance_, concat("state, cut at ", cut));
    }
}

TEST_P(CudaBackendParity, StateMovesBetweenBackendsAndSlots) {
    const auto prompt = random_tokens(33, n_vocab_, 6);
    cpu_->reset(9);
    prefill(*cpu_, 9, prompt);
    SequenceState state;
    cpu_->read_state(9, state);
    cuda_->write_state(10, state);
    cuda_->copy_state(10, 11);
    const int32_t token = 5;
    std::vector<float> cpu_logits(n_vocab_), cuda_logits(n_vocab_);
    const int cpu_seq = 9, cuda_seq = 11;
    cpu_->decode({&cpu_seq, 1}, {&token, 1}, cpu_logits);
    cuda_->decode({&cuda_seq, 1}, {&token, 1}, cuda_logits);
    expect_logits_near(cuda_logits, cpu_logits, tolerance_, "decode from a transferred state");
}

TEST_P(CudaBackendParity, RejectsBadArguments) {
    std::vector<float> logits(n_vocab_);
    const std::vector<int32_t> bad_token = {static_cast<int32_t>(n_vocab_)};
    EXPECT_THROW(cuda_->prefill(0, bad_token, logits, false), Error);
    const std::vector<int32_t> one_token = {1};
    EXPECT_THROW(cuda_->prefill(kSlots, one_token, logits, false), Error);
    const std::vector<int> twice = {1, 1};
    const std::vector<int32_t> two_tokens = {1, 2};
    std::vector<float> two_logits(2 * n_vocab_);
    EXPECT_THROW(cuda_->decode(twice, two_tokens, two_logits), Error);
    SequenceState wrong = SequenceState::zeros(model_->hparams());
    wrong.shape.d_state += 1;
    EXPECT_THROW(cuda_->write_state(0, wrong), Error);
}

std::string case_name(const ::testing::TestParamInfo<ModelCase>& info) { return info.param.name; }

RandomModelOptions with_biases() {
    RandomModelOptions options;
    options.proj_bias = true;
    options.conv_3d = true;
    options.vector_type = GgmlType::F16;
    return options;
}

INSTANTIATE_TEST_SUITE_P(RandomModels, CudaBackendParity,
                         ::testing::Values(ModelCase{"F32", GgmlType::F32, false, true, {}, false},
                                           ModelCase{"F16", GgmlType::F16, false, false, {}, false},
                                           ModelCase{"BF16", GgmlType::BF16, false, true, {}, false},
                                           ModelCase{"Q8_0", GgmlType::Q8_0, true, false, {}, false},
                                           ModelCase{"F32_biases", GgmlType::F32, false, false, with_biases(), false},
                                           ModelCase{"F16_falcon", GgmlType::F16, false, true, {}, true}),
                         case_name);

// ---- HF fixtures: the converter's checkpoints, HF's fp32 logits and greedy continuations ----

struct Fixture {
    std::string dir;
    nlohmann::json reference;
};

Fixture load_fixture(const std::string& name) {
    Fixture f{std::string(DENDRO_TEST_DATA) + "/hf/" + name, {}};
    std::ifstream in(f.dir + "/reference.json");
    if (!in) fail("cannot open ", f.dir, "/reference.json");
    f.reference = nlohmann::json::parse(in);
    return f;
}

std::vector<float> read_f32(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail("cannot open ", path);
    std::vector<float> values(static_cast<size_t>(in.tellg()) / sizeof(float));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
    return values;
}

class CudaHfFixture : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override {
        DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
    }

    std::unique_ptr<Model> convert(const Fixture& f, OutType type) {
        ConvertOptions options;
        options.model_dir = f.dir;
        options.output_path = dir_.file(concat(out_type_name(type), ".gguf"));
        if (!f.reference["vocab_dir"].is_null()) {
            options.vocab_dir = f.dir + "/" + f.reference["vocab_dir"].get<std::string>();
        }
        convert_hf_to_gguf(options);
        return Model::load(options.output_path);
    }

    test::TempDir dir_;
};

TEST_P(CudaHfFixture, Fp32MatchesHfLogitsAndGreedyContinuation) {
    const Fixture f = load_fixture(GetParam());
    const auto model = convert(f, OutType::F32);
    const int64_t n_vocab = model->hparams().n_vocab;
    auto cuda = make_backend(DeviceKind::Cuda, *model, BackendOptions{});
    for (const auto& prompt : f.reference["prompts"]) {
        const auto ids = prompt["ids"].get<std::vector<int32_t>>();
        const auto positions = prompt["logit_positions"].get<std::vector<int64_t>>();
        const auto expected = read_f32(f.dir + "/" + prompt["logits_file"].get<std::string>());
        const int64_t hf_vocab = static_cast<int64_t>(expected.size() / positions.size());
        cuda->reset(0);
        std::vector<float> logits(ids.size() * n_vocab);
        cuda->prefill(0, ids, logits, true);
        for (size_t i = 0; i < positions.size(); ++i) {
            expect_logits_near(std::span(logits).subspan(positions[i] * n_vocab, hf_vocab),
                               std::span(expected).subspan(i * hf_vocab, hf_vocab), 1e-3f,
                               concat(GetParam(), " position ", positions[i]));
        }
        // Greedy continuation, fed back token by token.
        const auto continuation = prompt["continuation"].get<std::vector<int32_t>>();
        std::vector<float> step_logits(n_vocab);
        int32_t token = argmax(std::span(logits).subspan((ids.size() - 1) * n_vocab, n_vocab));
        const int seq = 0;
        for (size_t i = 0; i < continuation.size(); ++i) {
            ASSERT_EQ(token, continuation[i]) << GetParam() << " continuation token " << i;
            cuda->decode({&seq, 1}, {&token, 1}, step_logits);
            token = argmax(step_logits);
        }
    }
}

TEST_P(CudaHfFixture, F16MatchesCpuLogitsAndGreedyText) {
    const Fixture f = load_fixture(GetParam());
    const auto model = convert(f, OutType::F16);
    const int64_t n_vocab = model->hparams().n_vocab;
    auto cpu = make_backend(DeviceKind::Cpu, *model, BackendOptions{});
    auto cuda = make_backend(DeviceKind::Cuda, *model, BackendOptions{});
    for (const auto& prompt : f.reference["prompts"]) {
        const auto ids = prompt["ids"].get<std::vector<int32_t>>();
        std::vector<float> cpu_logits(n_vocab), cuda_logits(n_vocab);
        cpu->reset(0);
        cuda->reset(0);
        cpu->prefill(0, ids, cpu_logits, false);
        cuda->prefill(0, ids, cuda_logits, false);
        const int seq = 0;
        for (int step = 0; step < 32; ++step) {
            expect_logits_near(cuda_logits, cpu_logits, 2e-2f, concat(GetParam(), " step ", step));
            int32_t cpu_token = argmax(cpu_logits), cuda_token = argmax(cuda_logits);
            ASSERT_EQ(cuda_token, cpu_token) << GetParam() << " step " << step;
            cpu->decode({&seq, 1}, {&cpu_token, 1}, cpu_logits);
            cuda->decode({&seq, 1}, {&cuda_token, 1}, cuda_logits);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaHfFixture,
                         ::testing::Values("mamba_tied_bpe", "mamba_untied_spm", "falcon_mamba_bpe",
                                           "mamba_sharded_bpe", "mamba_bf16_neox", "mamba_f16_spm"));

}  // namespace
}  // namespace dendro

#else

TEST(CudaBackendParity, NeedsTheCudaBackend) { DENDRO_REQUIRE_CUDA_DEVICE(false, "built without the CUDA backend"); }

#endif
