// The CPU backend's Mamba-2 (SSD) mixer against a plain double-precision token loop written here from HF
// Mamba2Mixer's equations, and the equalities the chunked SSD prefill keeps (docs/mamba2.md): batched decode
// = single decode bit for bit; a prefill split after a whole number of SSD chunks = one prefill bit for bit;
// prefill = token-by-token decode within float rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "cpu/mixer_mamba2.h"
#include "model/model.h"
#include "random_model_file.h"
#include "reference_math.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::linear;
using test::silu;
using test::softplus;
using test::TempModelFile;
using test::to_double;

void rms_in_place(double* x, const double* w, int64_t n, double eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    for (int64_t i = 0; i < n; ++i) x[i] = w[i] * (x[i] * scale);
}

// HF Mamba2ForCausalLM, one token at a time, in double.
class Mamba2Reference {
public:
    explicit Mamba2Reference(const Model& m) : hp_(m.hparams()) {
        const ModelWeights& w = m.weights();
        embd_ = to_double(w.token_embd);
        out_norm_ = to_double(w.output_norm);
        out_w_ = to_double(w.output);
        for (const LayerWeights& layer : w.layers) {
            const Mamba2Mixer& l = layer.mamba2();
            layers_.push_back({to_double(layer.attn_norm), to_double(l.ssm_in), to_double(l.ssm_in_b),
                               to_double(l.conv1d_w), to_double(l.conv1d_b), to_double(l.ssm_dt_b), to_double(l.ssm_a),
                               to_double(l.ssm_d), to_double(l.ssm_norm), to_double(l.ssm_out), to_double(l.ssm_out_b)});
        }
        conv_.assign(hp_.n_layer, std::vector<double>((hp_.d_conv - 1) * hp_.conv_channels(), 0.0));
        ssm_.assign(hp_.n_layer, std::vector<double>(hp_.d_inner * hp_.d_state, 0.0));
    }

    std::vector<double> step(int32_t token) {
        const int64_t D = hp_.d_model, E = hp_.d_inner, N = hp_.d_state, K = hp_.d_conv, H = hp_.n_head;
        const int64_t P = hp_.head_dim, G = hp_.n_group, C = hp_.conv_channels(), I = hp_.in_proj_rows();
        std::vector<double> h(embd_.begin() + token * D, embd_.begin() + (token + 1) * D);
        for (int64_t il = 0; il < hp_.n_layer; ++il) {
            const Layer& L = layers_[il];
            std::vector<double> hn = h;
            rms_in_place(hn.data(), L.norm.data(), D, hp_.norm_eps);
            const std::vector<double> proj = linear(L.in_w, L.in_b, hn.data(), D, I);
            const double* z = proj.data();
            const double* xbc_in = proj.data() + E;
            const double* dt_in = proj.data() + E + C;
            std::vector<double> xbc(C);
            std::vector<double>& win = conv_[il];
            for (int64_t c = 0; c < C; ++c) {
                double s = L.conv_b.empty() ? 0.0 : L.conv_b[c];
                for (int64_t k = 0; k < K - 1; ++k) s += L.conv_w[c * K + k] * win[k * C + c];
                s += L.conv_w[c * K + K - 1] * xbc_in[c];
                for (int64_t k = 0; k + 1 < K - 1; ++k) win[k * C + c] = win[(k + 1) * C + c];
                if (K > 1) win[(K - 2) * C + c] = xbc_in[c];
                xbc[c] = silu(s);
            }
            std::vector<double> y(E);
            for (int64_t head = 0; head < H; ++head) {
                const int64_t g = head / (H / G);
                const double dt = std::clamp(softplus(dt_in[head] + L.dt_b[head]), double{hp_.time_step_min},
                                             double{hp_.time_step_max});
                const double decay = std::exp(dt * L.a[head]);
                const double* b = xbc.data() + E + g * N;
                const double* c = xbc.data() + E + G * N + g * N;
                for (int64_t p = 0; p < P; ++p) {
                    const int64_t ch = head * P + p;
                    double sum = 0;
                    for (int64_t n = 0; n < N; ++n) {
                        double& state = ssm_[il][ch * N + n];
                        state = state * decay + dt * b[n] * xbc[ch];
                        sum += state * c[n];
                    }
                    y[ch] = sum + L.d[head] * xbc[ch];
                }
            }
            for (int64_t i = 0; i < E; ++i) y[i] *= silu(z[i]);
            for (int64_t g = 0; g < G; ++g) rms_in_place(y.data() + g * (E / G), L.gnorm.data() + g * (E / G), E / G, hp_.norm_eps);
            const std::vector<double> out = linear(L.out_w, L.out_b, y.data(), E, D);
            for (int64_t i = 0; i < D; ++i) h[i] += out[i];
        }
        rms_in_place(h.data(), out_norm_.data(), D, hp_.norm_eps);
        return linear(out_w_, {}, h.data(), D, hp_.n_vocab);
    }

    const std::vector<std::vector<double>>& ssm() const { return ssm_; }
    const std::vector<std::vector<double>>& conv() const { return conv_; }

private:
    struct Layer {
        std::vector<double> norm, in_w, in_b, conv_w, conv_b, dt_b, a, d, gnorm, out_w, out_b;
    };
    ModelHparams hp_;
    std::vector<double> embd_, out_norm_, out_w_;
    std::vector<Layer> layers_;
    std::vector<std::vector<double>> conv_, ssm_;
};

std::vector<int32_t> some_tokens(size_t n, int64_t n_vocab, uint32_t salt = 0) {
    std::vector<int32_t> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 37 + salt * 11 + 5) % n_vocab);
    return t;
}

// Scaled difference: |a - b| / (1 + |b|), so logits near 0 and large ones are judged alike.
double max_scaled_diff(std::span<const float> a, std::span<const float> b) {
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(double{a[i]} - double{b[i]}) / (1.0 + std::abs(double{b[i]})));
    }
    return worst;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

ModelHparams mamba2_hparams(int64_t n_group, int64_t head_dim, int64_t d_state, int64_t d_conv) {
    ModelHparams hp;
    hp.arch = Architecture::Mamba2;
    hp.n_vocab = 67;
    hp.d_model = 24;
    hp.n_layer = 2;
    hp.d_conv = d_conv;
    hp.d_state = d_state;
    hp.n_group = n_group;
    hp.head_dim = head_dim;
    hp.n_head = 4 * n_group;
    hp.d_inner = hp.n_head * head_dim;
    return hp;
}

struct Mamba2Case {
    std::string name;
    ModelHparams hp;
    GgmlType matrix_type = GgmlType::F32;
    bool tied = true;
    RandomModelOptions options;
};

void PrintTo(const Mamba2Case& c, std::ostream* os) { *os << c.name; }

std::vector<Mamba2Case> cases() {
    std::vector<Mamba2Case> all;
    all.push_back({"one_group", mamba2_hparams(1, 8, 16, 4)});
    all.push_back({"three_groups_odd_state", mamba2_hparams(3, 4, 7, 3)});
    // Wide enough for the SSD chunk's register tiles of several vectors, with partial vectors after them.
    all.push_back({"wide_head_and_state", mamba2_hparams(1, 36, 41, 4)});
    Mamba2Case limited{"time_step_limit_binds", mamba2_hparams(2, 6, 5, 4)};
    limited.hp.time_step_min = 0.02f;  // the random dt spans [1e-3, 1e-1]: both ends bind
    limited.hp.time_step_max = 0.05f;
    all.push_back(limited);
    Mamba2Case biased{"biases_untied_f16", mamba2_hparams(2, 8, 16, 4), GgmlType::F16, false};
    biased.options.proj_bias = true;
    biased.options.conv_bias = false;
    biased.options.conv_3d = true;
    all.push_back(biased);
    return all;
}

class CpuMamba2 : public ::testing::TestWithParam<Mamba2Case> {
protected:
    void SetUp() override {
        const Mamba2Case& c = GetParam();
        file_ = std::make_unique<TempModelFile>(c.hp, c.matrix_type, 11, c.tied, c.options);
        model_ = Model::load(file_->path());
        hp_ = model_->hparams();
    }
    std::unique_ptr<Backend> cpu(int n_threads = 2, int n_seq = 1) const {
        return make_cpu_backend(*model_, BackendOptions{n_threads, n_seq});
    }

    std::unique_ptr<TempModelFile> file_;
    std::unique_ptr<Model> model_;
    ModelHparams hp_;
};

TEST_P(CpuMamba2, LoadsWithItsShapes) {
    EXPECT_EQ(hp_.arch, Architecture::Mamba2);
    EXPECT_EQ(hp_.n_head, GetParam().hp.n_head);
    EXPECT_EQ(hp_.head_dim, GetParam().hp.head_dim);
    EXPECT_EQ(hp_.n_group, GetParam().hp.n_group);
    EXPECT_FLOAT_EQ(hp_.time_step_min, GetParam().hp.time_step_min);
    EXPECT_EQ(hp_.time_step_max, GetParam().hp.time_step_max);
    EXPECT_EQ(model_->weights().layers[0].mamba2().ssm_in.n_rows(), hp_.in_proj_rows());
}

// Every position's logits of a prompt that crosses several SSD chunks and a prefill pass, and the final
// states, against the double-precision token loop.
TEST_P(CpuMamba2, PrefillMatchesTheReferenceAtEveryPosition) {
    const std::vector<int32_t> prompt = some_tokens(2 * cpu::kSsdChunk + 3 + 256, hp_.n_vocab, 3);
    auto b = cpu();
    std::vector<float> logits(prompt.size() * hp_.n_vocab);
    b->prefill(0, prompt, logits, true);
    Mamba2Reference ref(*model_);
    double worst = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
        const std::vector<double> expected = ref.step(prompt[t]);
        for (int64_t v = 0; v < hp_.n_vocab; ++v) {
            worst = std::max(worst, std::abs(logits[t * hp_.n_vocab + v] - expected[v]) / (1.0 + std::abs(expected[v])));
        }
    }
    EXPECT_LT(worst, 1e-4);
    SequenceState state;
    b->read_state(0, state);
    double worst_state = 0;
    for (int64_t l = 0; l < hp_.n_layer; ++l) {
        for (size_t i = 0; i < ref.ssm()[l].size(); ++i) {
            worst_state = std::max(worst_state, std::abs(state.ssm_layer(l)[i] - ref.ssm()[l][i]) /
                                                    (1.0 + std::abs(ref.ssm()[l][i])));
        }
        for (size_t i = 0; i < ref.conv()[l].size(); ++i) {
            EXPECT_NEAR(state.conv_layer(l)[i], ref.conv()[l][i], 1e-5 * (1.0 + std::abs(ref.conv()[l][i])));
        }
    }
    EXPECT_LT(worst_state, 1e-4);
}

TEST_P(CpuMamba2, DecodeMatchesPrefillWithinRounding) {
    const std::vector<int32_t> prompt = some_tokens(cpu::kSsdChunk + 9, hp_.n_vocab, 5);
    auto prefilled = cpu(), stepped = cpu();
    std::vector<float> all(prompt.size() * hp_.n_vocab), one(hp_.n_vocab);
    prefilled->prefill(0, prompt, all, true);
    double worst = 0;
    const int seq = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
        stepped->decode({&seq, 1}, {&prompt[t], 1}, one);
        worst = std::max(worst, max_scaled_diff(one, std::span(all).subspan(t * hp_.n_vocab, hp_.n_vocab)));
    }
    EXPECT_LT(worst, 1e-5);
}

// One-token prefills and decodes take the recurrence: bit-identical, alone or batched, with 1 or 2 threads.
TEST_P(CpuMamba2, BatchedDecodeEqualsSingleDecodeBitForBit) {
    auto batched = cpu(2, 3), single = cpu(1, 1);
    const std::vector<int32_t> prompt = some_tokens(cpu::kSsdChunk + 2, hp_.n_vocab, 1);
    std::vector<float> logits(hp_.n_vocab);
    batched->prefill(1, prompt, logits, false);
    single->prefill(0, prompt, logits, false);
    const std::vector<int> seqs = {2, 1, 0};
    for (int step = 0; step < 4; ++step) {
        const std::vector<int32_t> tokens = some_tokens(3, hp_.n_vocab, 20 + step);
        std::vector<float> batch_logits(3 * hp_.n_vocab), one(hp_.n_vocab);
        batched->decode(seqs, tokens, batch_logits);
        const int seq = 0;
        single->decode({&seq, 1}, {&tokens[1], 1}, one);  // slot 1 of the batch holds the same past
        EXPECT_TRUE(same_bits(std::span(batch_logits).subspan(hp_.n_vocab, hp_.n_vocab), one)) << "step " << step;
    }
}

// A batch larger than the ones every thread normalises itself (cpu::kPrivateNormRows: the block norm and
// the gated norm) takes the shared rows and barriers: the same bits as one sequence decoded alone.
TEST_P(CpuMamba2, ABatchPastThePrivateNormRowsEqualsSingleDecodes) {
    constexpr int kSeqs = static_cast<int>(cpu::kPrivateNormRows) + 3;
    auto batched = cpu(2, kSeqs), single = cpu(2, 1);
    const std::vector<int32_t> prompt = some_tokens(5, hp_.n_vocab, 3);
    std::vector<float> logits(hp_.n_vocab);
    for (int s = 0; s < kSeqs; ++s) batched->prefill(s, prompt, logits, false);
    single->prefill(0, prompt, logits, false);
    std::vector<int> seqs(kSeqs);
    for (int s = 0; s < kSeqs; ++s) seqs[s] = s;
    const std::vector<int32_t> tokens(kSeqs, 7);
    std::vector<float> batch_logits(kSeqs * hp_.n_vocab), one(hp_.n_vocab);
    batched->decode(seqs, tokens, batch_logits);
    const int seq = 0;
    single->decode({&seq, 1}, {&tokens[0], 1}, one);
    for (int s = 0; s < kSeqs; ++s) {
        EXPECT_TRUE(same_bits(std::span(batch_logits).subspan(s * hp_.n_vocab, hp_.n_vocab), one)) << "row " << s;
    }
}

// A prompt prefilled in two calls split after a whole number of SSD chunks gives the bits of one call: what
// makes a prefix-cache checkpoint at such a position exact.
TEST_P(CpuMamba2, PrefillSplitAtAChunkBoundaryIsBitIdentical) {
    const std::vector<int32_t> prompt = some_tokens(3 * cpu::kSsdChunk + 5, hp_.n_vocab, 9);
    auto whole = cpu(), split = cpu(1, 1);
    std::vector<float> whole_logits(hp_.n_vocab), split_logits(hp_.n_vocab);
    whole->prefill(0, prompt, whole_logits, false);
    const auto head = std::span(prompt).first(2 * cpu::kSsdChunk);
    split->prefill(0, head, split_logits, false);
    split->prefill(0, std::span(prompt).subspan(head.size()), split_logits, false);
    EXPECT_TRUE(same_bits(whole_logits, split_logits));
    SequenceState a, b;
    whole->read_state(0, a);
    split->read_state(0, b);
    EXPECT_TRUE(same_bits(a.ssm, b.ssm));
    EXPECT_TRUE(same_bits(a.conv, b.conv));
}

// Saving a state, continuing elsewhere from it, and forking a slot reproduce the uninterrupted run.
TEST_P(CpuMamba2, StatesRoundTripAndFork) {
    const std::vector<int32_t> prompt = some_tokens(cpu::kSsdChunk, hp_.n_vocab, 2);
    const std::vector<int32_t> more = some_tokens(7, hp_.n_vocab, 4);
    auto a = cpu(2, 2), b = cpu(2, 1);
    std::vector<float> la(hp_.n_vocab), lb(hp_.n_vocab), lc(hp_.n_vocab);
    a->prefill(0, prompt, la, false);
    SequenceState saved;
    a->read_state(0, saved);
    EXPECT_EQ(saved.shape, StateShape::of(hp_));
    EXPECT_EQ(saved.conv.size(), static_cast<size_t>(hp_.n_layer * (hp_.d_conv - 1) * hp_.conv_channels()));
    b->write_state(0, saved);
    a->copy_state(0, 1);
    a->prefill(0, more, la, false);
    b->prefill(0, more, lb, false);
    a->prefill(1, more, lc, false);
    EXPECT_TRUE(same_bits(la, lb));
    EXPECT_TRUE(same_bits(la, lc));
    SequenceState mamba1_shaped = saved;
    mamba1_shaped.shape.arch = Architecture::Mamba1;
    EXPECT_THROW(b->write_state(0, mamba1_shaped), Error);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuMamba2, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Mamba2Case>& info) { return info.param.name; });

}  // namespace
}  // namespace dendro
