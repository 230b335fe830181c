// The CPU backend against a plain double-precision implementation of HF's Mamba forward written here, and
// its exactness properties: prefill = token-by-token decode = chunked prefill = batched decode, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/mixer.h"
#include "common/error.h"
#include "format/ggml_quant_blocks.h"
#include "model/model.h"
#include "random_model_file.h"
#include "reference_math.h"
#include "random_quant_model.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::linear;
using test::silu;
using test::softplus;
using test::TempModelFile;
using test::to_double;

// ---- Scalar reference (double precision, HF MambaMixer slow path order) ----

// The CPU backend multiplies quantized matrices with its input rounded to 8 bits per block (as llama.cpp
// does): blocks of 32 (256 for the k-quants) scaled by max |x| / 127, x / scale rounded to nearest. The
// reference rounds the same way before those products, so that what is compared is the forward pass rather
// than that rounding (test_quant_types bounds the rounding itself). 0 = the matrix takes x as it is.
int64_t activation_block(GgmlType matrix_type) {
    const int64_t block_size = ggml_type_traits(static_cast<uint32_t>(matrix_type))->block_size;
    return block_size == 1 ? 0 : block_size;
}

std::vector<double> rounded_to_8_bits(const double* x, int64_t n, int64_t block) {
    constexpr double kLevels = 127;
    std::vector<double> out(x, x + n);
    if (block == 0) return out;
    for (int64_t b = 0; b < n; b += block) {
        double amax = 0;
        for (int64_t i = b; i < b + block; ++i) amax = std::max(amax, std::abs(x[i]));
        const double step = amax / kLevels;
        for (int64_t i = b; i < b + block; ++i) out[i] = step == 0 ? 0 : step * std::nearbyint(x[i] / step);
    }
    return out;
}

struct RefLinear {
    std::vector<double> w, b;
    int64_t activation_block;
    std::vector<double> operator()(const double* x, int64_t n_in, int64_t n_out) const {
        return linear(w, b, rounded_to_8_bits(x, n_in, activation_block).data(), n_in, n_out);
    }
};

RefLinear ref_linear(const TensorView& w, const TensorView& b) {
    return {to_double(w), to_double(b), activation_block(w.type)};
}

struct RefLayer {
    std::vector<double> norm;
    RefLinear in;
    std::vector<double> conv_w, conv_b;
    RefLinear x, dt;
    std::vector<double> a, d;
    RefLinear out;
};

struct RefModel {
    ModelHparams hp;
    std::vector<double> embd, out_norm;
    RefLinear output;
    std::vector<RefLayer> layers;

    explicit RefModel(const Model& m) : hp(m.hparams()) {
        const ModelWeights& w = m.weights();
        embd = to_double(w.token_embd);
        out_norm = to_double(w.output_norm);
        output = ref_linear(w.output, {});
        for (const LayerWeights& layer : w.layers) {
            const Mamba1Mixer& l = layer.mamba1();
            layers.push_back({to_double(layer.attn_norm), ref_linear(l.ssm_in, l.ssm_in_b), to_double(l.conv1d_w),
                              to_double(l.conv1d_b), ref_linear(l.ssm_x, {}), ref_linear(l.ssm_dt_w, l.ssm_dt_b),
                              to_double(l.ssm_a), to_double(l.ssm_d), ref_linear(l.ssm_out, l.ssm_out_b)});
        }
    }
};

struct RefState {
    std::vector<std::vector<double>> conv, ssm;  // per layer: [t][channel], [channel][state]
    explicit RefState(const ModelHparams& hp)
        : conv(hp.n_layer, std::vector<double>((hp.d_conv - 1) * hp.d_inner, 0.0)),
          ssm(hp.n_layer, std::vector<double>(hp.d_inner * hp.d_state, 0.0)) {}
};

std::vector<double> rms(const std::vector<double>& x, const double* w, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / x.size() + eps);
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = (w ? w[i] : 1.0) * x[i] * scale;
    return out;
}

std::vector<double> ref_step(const RefModel& m, RefState& st, int32_t token) {
    const ModelHparams& hp = m.hp;
    const int64_t D = hp.d_model, E = hp.d_inner, N = hp.d_state, R = hp.dt_rank, K = hp.d_conv;
    std::vector<double> h(m.embd.begin() + token * D, m.embd.begin() + (token + 1) * D);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const RefLayer& L = m.layers[il];
        const std::vector<double> hn = rms(h, L.norm.data(), hp.norm_eps);
        const std::vector<double> xz = L.in(hn.data(), D, 2 * E);
        std::vector<double> xc(E);
        std::vector<double>& win = st.conv[il];
        for (int64_t c = 0; c < E; ++c) {
            double s = L.conv_b.empty() ? 0.0 : L.conv_b[c];
            for (int64_t k = 0; k < K - 1; ++k) s += L.conv_w[c * K + k] * win[k * E + c];
            s += L.conv_w[c * K + K - 1] * xz[c];
            for (int64_t k = 0; k + 1 < K - 1; ++k) win[k * E + c] = win[(k + 1) * E + c];
            if (K > 1) win[(K - 2) * E + c] = xz[c];
            xc[c] = silu(s);
        }
        std::vector<double> xdbc = L.x(xc.data(), E, R + 2 * N);
        if (hp.dt_b_c_rms) {
            for (auto [off, len] : {std::pair<int64_t, int64_t>{0, R}, {R, N}, {R + N, N}}) {
                std::vector<double> part(xdbc.begin() + off, xdbc.begin() + off + len);
                part = rms(part, nullptr, hp.mixer_rms_eps);
                std::copy(part.begin(), part.end(), xdbc.begin() + off);
            }
        }
        const std::vector<double> dt_raw = L.dt(xdbc.data(), R, E);
        std::vector<double> y(E);
        for (int64_t c = 0; c < E; ++c) {
            const double dt = softplus(dt_raw[c]);
            double sum = 0;
            for (int64_t s = 0; s < N; ++s) {
                double& state = st.ssm[il][c * N + s];
                state = std::exp(dt * L.a[c * N + s]) * state + dt * xdbc[R + s] * xc[c];
                sum += state * xdbc[R + N + s];
            }
            y[c] = (sum + xc[c] * L.d[c]) * silu(xz[E + c]);
        }
        const std::vector<double> out = L.out(y.data(), E, D);
        for (int64_t i = 0; i < D; ++i) h[i] += out[i];
    }
    const std::vector<double> hn = rms(h, m.out_norm.data(), hp.norm_eps);
    return m.output(hn.data(), D, hp.n_vocab);
}

// ---- Helpers ----

std::vector<int32_t> some_tokens(size_t n, int64_t n_vocab, uint32_t salt = 0) {
    std::vector<int32_t> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 37 + salt * 11 + 5) % n_vocab);
    return t;
}

// One thread by default: the properties tested do not depend on it (ThreadCountDoesNotChangeResults checks that).
std::unique_ptr<Backend> cpu(const Model& model, int n_seq = 1, int n_threads = 1) {
    return make_cpu_backend(model, BackendOptions{n_threads, n_seq});
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_state(const SequenceState& a, const SequenceState& b) {
    return same_bits(a.conv, b.conv) && same_bits(a.ssm, b.ssm);
}

SequenceState state_of(const Backend& b, int seq) {
    SequenceState s;
    b.read_state(seq, s);
    return s;
}

std::vector<float> decode_one(Backend& b, int seq, int32_t token) {
    std::vector<float> logits(b.hparams().n_vocab);
    const int seqs[] = {seq};
    const int32_t toks[] = {token};
    b.decode(seqs, toks, logits);
    return logits;
}

// ---- Against the reference ----

// Shapes whose rows are whole blocks of the type (all rows but dt_proj's: that matrix falls back to F16).
ModelHparams shape_for(GgmlType type) {
    switch (ggml_type_traits(static_cast<uint32_t>(type))->block_size) {
        case 1: return test::tiny_hparams_any_length();
        case kQ8_0BlockSize: return test::tiny_hparams_q8();
        default: return test::tiny_hparams_k_quants();
    }
}

struct RefCase {
    const char* name;
    GgmlType matrix_type;
    bool tied;
    RandomModelOptions options;
    bool falcon;
};

void expect_logits_and_states_match_reference(const Model& model, const char* name) {
    const ModelHparams& hp = model.hparams();
    const RefModel ref(model);
    RefState ref_state(hp);
    auto backend = cpu(model);

    const std::vector<int32_t> tokens = some_tokens(12, hp.n_vocab);
    std::vector<float> all(tokens.size() * hp.n_vocab);
    backend->prefill(0, tokens, all, true);
    double worst = 0;
    for (size_t t = 0; t < tokens.size(); ++t) {
        const std::vector<double> expected = ref_step(ref, ref_state, tokens[t]);
        double scale = 1.0;
        for (double v : expected) scale = std::max(scale, std::abs(v));
        for (int64_t i = 0; i < hp.n_vocab; ++i) {
            worst = std::max(worst, std::abs(all[t * hp.n_vocab + i] - expected[i]) / scale);
        }
    }
    EXPECT_LT(worst, 2e-5) << name;

    const SequenceState st = state_of(*backend, 0);
    double worst_state = 0;
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        for (size_t i = 0; i < ref_state.ssm[il].size(); ++i) {
            worst_state = std::max(worst_state, std::abs(st.ssm_layer(il)[i] - ref_state.ssm[il][i]));
        }
        for (size_t i = 0; i < ref_state.conv[il].size(); ++i) {
            worst_state = std::max(worst_state, std::abs(st.conv_layer(il)[i] - ref_state.conv[il][i]));
        }
    }
    EXPECT_LT(worst_state, 1e-4) << name;
}

class CpuVsReference : public ::testing::TestWithParam<RefCase> {};

TEST_P(CpuVsReference, LogitsMatchDoublePrecisionReference) {
    const RefCase& rc = GetParam();
    ModelHparams hp = shape_for(rc.matrix_type);
    hp.dt_b_c_rms = rc.falcon;
    TempModelFile file(hp, rc.matrix_type, 7, rc.tied, rc.options);
    const auto model = Model::load(file.path());
    EXPECT_EQ(model->weights().layers[0].mamba1().ssm_in.type, rc.matrix_type);
    expect_logits_and_states_match_reference(*model, rc.name);
}

// Types mixed as llama.cpp's Q4_K_M recipe mixes them for Mamba: Q4_K matrices, Q6_K for the output (and
// here the untied embedding), dt_proj (rows of dt_rank, not whole k-quant blocks) in Q4_K's fallback Q5_0;
// plus a layer as its Q3_K recipes store it: other k-quants, dt_proj in their fallback IQ4_NL.
TEST(CpuMixedTypes, Q4KMStyleFileMatchesReference) {
    ModelHparams hp = test::tiny_hparams_k_quants();
    hp.dt_rank = 32;
    hp.n_layer = 3;
    const test::MatrixTypeChoice q4_k_m = [](const std::string& name, int64_t row_length) {
        if (name == "token_embd.weight" || name == "output.weight") return GgmlType::Q6_K;
        const bool last_layer = name.starts_with("blk.2.");
        if (row_length % kKQuantBlockSize != 0) return last_layer ? GgmlType::IQ4_NL : GgmlType::Q5_0;
        if (last_layer) return name.ends_with("ssm_in.weight") ? GgmlType::Q5_K : GgmlType::Q3_K;
        return GgmlType::Q4_K;
    };
    const test::TempDir dir;
    const std::string path = dir.file("q4_k_m.gguf");
    test::write_random_quant_mamba_gguf(path, hp, q4_k_m, 5, false);
    const auto model = Model::load(path);
    const ModelWeights& w = model->weights();
    EXPECT_EQ(w.token_embd.type, GgmlType::Q6_K);
    EXPECT_EQ(w.output.type, GgmlType::Q6_K);
    EXPECT_EQ(w.layers[0].mamba1().ssm_in.type, GgmlType::Q4_K);
    EXPECT_EQ(w.layers[1].mamba1().ssm_out.type, GgmlType::Q4_K);
    EXPECT_EQ(w.layers[1].mamba1().ssm_dt_w.type, GgmlType::Q5_0);
    EXPECT_EQ(w.layers[2].mamba1().ssm_in.type, GgmlType::Q5_K);
    EXPECT_EQ(w.layers[2].mamba1().ssm_x.type, GgmlType::Q3_K);
    EXPECT_EQ(w.layers[2].mamba1().ssm_dt_w.type, GgmlType::IQ4_NL);
    expect_logits_and_states_match_reference(*model, "q4_k_m");
}

RandomModelOptions with_biases() {
    RandomModelOptions o;
    o.proj_bias = true;
    o.conv_3d = true;
    o.vector_type = GgmlType::F16;
    return o;
}

RandomModelOptions without_conv_bias() {
    RandomModelOptions o;
    o.conv_bias = false;
    o.vector_type = GgmlType::BF16;
    return o;
}

INSTANTIATE_TEST_SUITE_P(
    Types, CpuVsReference,
    ::testing::Values(RefCase{"f32", GgmlType::F32, true, {}, false},
                      RefCase{"f32_untied_biases", GgmlType::F32, false, with_biases(), false},
                      RefCase{"f16", GgmlType::F16, true, {}, false},
                      RefCase{"bf16_no_conv_bias", GgmlType::BF16, false, without_conv_bias(), false},
                      RefCase{"q8_0", GgmlType::Q8_0, true, {}, false},
                      RefCase{"q8_0_untied", GgmlType::Q8_0, false, with_biases(), false},
                      RefCase{"q4_0", GgmlType::Q4_0, true, {}, false},
                      RefCase{"q4_1_untied", GgmlType::Q4_1, false, with_biases(), false},
                      RefCase{"q5_0", GgmlType::Q5_0, true, {}, false},
                      RefCase{"q5_1", GgmlType::Q5_1, false, {}, false},
                      RefCase{"iq4_nl", GgmlType::IQ4_NL, false, {}, false},
                      RefCase{"q2_K", GgmlType::Q2_K, true, {}, false},
                      RefCase{"q3_K", GgmlType::Q3_K, false, {}, false},
                      RefCase{"q4_K", GgmlType::Q4_K, true, {}, false},
                      RefCase{"q5_K_untied_biases", GgmlType::Q5_K, false, with_biases(), false},
                      RefCase{"q6_K", GgmlType::Q6_K, true, {}, false},
                      RefCase{"falcon_f32", GgmlType::F32, true, {}, true},
                      RefCase{"falcon_q8_0", GgmlType::Q8_0, false, {}, true},
                      RefCase{"falcon_q4_K", GgmlType::Q4_K, false, {}, true}),
    [](const ::testing::TestParamInfo<RefCase>& info) { return std::string(info.param.name); });

// ---- Exactness properties ----

class CpuExactness : public ::testing::TestWithParam<GgmlType> {
protected:
    void SetUp() override {
        hp_ = shape_for(GetParam());
        file_ = std::make_unique<TempModelFile>(hp_, GetParam(), 3, false);
        model_ = Model::load(file_->path());
    }
    ModelHparams hp_;
    std::unique_ptr<TempModelFile> file_;
    std::unique_ptr<Model> model_;
};

TEST_P(CpuExactness, PrefillEqualsTokenByTokenDecode) {
    // Longer than the backend's prefill chunk, so chunk boundaries are crossed too.
    const std::vector<int32_t> tokens = some_tokens(300, hp_.n_vocab);
    auto a = cpu(*model_);
    std::vector<float> all(tokens.size() * hp_.n_vocab);
    a->prefill(0, tokens, all, true);

    auto b = cpu(*model_);
    for (size_t t = 0; t < tokens.size(); ++t) {
        const std::vector<float> step = decode_one(*b, 0, tokens[t]);
        ASSERT_EQ(0, std::memcmp(step.data(), all.data() + t * hp_.n_vocab, hp_.n_vocab * sizeof(float)))
            << "position " << t;
    }
    EXPECT_TRUE(same_state(state_of(*a, 0), state_of(*b, 0)));

    std::vector<float> last(hp_.n_vocab);
    auto c = cpu(*model_);
    c->prefill(0, tokens, last, false);
    const float* last_row = all.data() + (tokens.size() - 1) * hp_.n_vocab;
    EXPECT_EQ(0, std::memcmp(last.data(), last_row, hp_.n_vocab * sizeof(float)));
}

TEST_P(CpuExactness, PrefillInPiecesEqualsWhole) {
    const std::vector<int32_t> tokens = some_tokens(40, hp_.n_vocab, 1);
    auto whole = cpu(*model_);
    std::vector<float> whole_logits(hp_.n_vocab);
    whole->prefill(0, tokens, whole_logits, false);

    auto pieces = cpu(*model_);
    std::vector<float> piece_logits(hp_.n_vocab);
    const std::span<const int32_t> all(tokens);
    pieces->prefill(0, all.subspan(0, 13), piece_logits, false);
    pieces->prefill(0, all.subspan(13, 1), piece_logits, false);
    pieces->prefill(0, all.subspan(14), piece_logits, false);
    EXPECT_TRUE(same_bits(whole_logits, piece_logits));
    EXPECT_TRUE(same_state(state_of(*whole, 0), state_of(*pieces, 0)));
}

TEST_P(CpuExactness, BatchedDecodeEqualsSingleDecodes) {
    auto batched = cpu(*model_, 4);
    auto single = cpu(*model_, 4);
    std::vector<float> scratch(5 * hp_.n_vocab);
    for (int s = 0; s < 3; ++s) {
        const std::vector<int32_t> prompt = some_tokens(5 + 3 * s, hp_.n_vocab, s);
        batched->prefill(s + 1, prompt, scratch, false);
        single->prefill(s + 1, prompt, scratch, false);
    }
    const int seqs[] = {3, 1, 2};
    for (int step = 0; step < 4; ++step) {
        const int32_t toks[] = {int32_t(step + 1), int32_t(2 * step + 7), int32_t(3 * step + 2)};
        std::vector<float> logits(3 * hp_.n_vocab);
        batched->decode(seqs, toks, logits);
        for (int i = 0; i < 3; ++i) {
            const std::vector<float> one = decode_one(*single, seqs[i], toks[i]);
            ASSERT_EQ(0, std::memcmp(one.data(), logits.data() + i * hp_.n_vocab, hp_.n_vocab * sizeof(float)))
                << "step " << step << " sequence " << seqs[i];
        }
    }
    for (int s = 1; s <= 3; ++s) EXPECT_TRUE(same_state(state_of(*batched, s), state_of(*single, s)));
    EXPECT_TRUE(same_state(state_of(*batched, 0), SequenceState::zeros(hp_)));
}

// A batch larger than the ones every thread normalises itself (cpu::kPrivateNormRows) takes the shared norm
// rows and barrier: the same bits as each sequence decoded alone, on two threads.
TEST_P(CpuExactness, ABatchPastThePrivateNormRowsEqualsSingleDecodes) {
    constexpr int kSeqs = static_cast<int>(cpu::kPrivateNormRows) + 3;
    auto batched = cpu(*model_, kSeqs, 2);
    auto single = cpu(*model_, kSeqs, 2);
    std::vector<int> seqs(kSeqs);
    std::vector<int32_t> toks(kSeqs);
    std::vector<float> scratch(hp_.n_vocab);
    for (int s = 0; s < kSeqs; ++s) {
        const std::vector<int32_t> prompt = some_tokens(2 + s % 5, hp_.n_vocab, s);
        batched->prefill(s, prompt, scratch, false);
        single->prefill(s, prompt, scratch, false);
        seqs[s] = kSeqs - 1 - s;
        toks[s] = static_cast<int32_t>((7 * s + 3) % hp_.n_vocab);
    }
    std::vector<float> logits(kSeqs * hp_.n_vocab);
    batched->decode(seqs, toks, logits);
    for (int i = 0; i < kSeqs; ++i) {
        const std::vector<float> one = decode_one(*single, seqs[i], toks[i]);
        ASSERT_EQ(0, std::memcmp(one.data(), logits.data() + i * hp_.n_vocab, hp_.n_vocab * sizeof(float))) << "sequence " << seqs[i];
    }
}

TEST_P(CpuExactness, ThreadCountDoesNotChangeResults) {
    const std::vector<int32_t> tokens = some_tokens(30, hp_.n_vocab, 2);
    std::vector<float> one(tokens.size() * hp_.n_vocab), three(one.size()), seven(one.size());
    cpu(*model_, 1, 1)->prefill(0, tokens, one, true);
    cpu(*model_, 1, 3)->prefill(0, tokens, three, true);
    cpu(*model_, 1, 7)->prefill(0, tokens, seven, true);  // more threads than some steps have work for
    EXPECT_TRUE(same_bits(one, three));
    EXPECT_TRUE(same_bits(one, seven));

    // Batched decode too, where each thread's share of the work is a few rows and channels.
    std::vector<std::vector<float>> step_logits;
    for (const int n_threads : {1, 3}) {
        auto b = cpu(*model_, 2, n_threads);
        std::vector<float> scratch(hp_.n_vocab), logits(2 * hp_.n_vocab);
        b->prefill(1, tokens, scratch, false);
        const int seqs[] = {1, 0};
        const int32_t toks[] = {5, 6};
        b->decode(seqs, toks, logits);
        step_logits.push_back(logits);
    }
    EXPECT_TRUE(same_bits(step_logits[0], step_logits[1]));
}

INSTANTIATE_TEST_SUITE_P(Types, CpuExactness,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                                           GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                           GgmlType::IQ4_NL, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                                           GgmlType::Q5_K, GgmlType::Q6_K),
                         [](const ::testing::TestParamInfo<GgmlType>& info) { return ggml_type_name(info.param); });

TEST(BackendFactory, ParsesDevicesAndRefusesMissingCuda) {
    EXPECT_EQ(parse_device("cpu"), DeviceKind::Cpu);
    EXPECT_EQ(parse_device("cuda"), DeviceKind::Cuda);
    EXPECT_EQ(parse_device("auto"), DeviceKind::Auto);
    EXPECT_THROW(parse_device("gpu"), Error);
    EXPECT_THROW(parse_device(""), Error);

    const TempModelFile file(test::tiny_hparams_any_length(), GgmlType::F32);
    const auto model = Model::load(file.path());
    EXPECT_EQ(make_backend(DeviceKind::Cpu, *model, BackendOptions{1, 1})->name(), "cpu");
    if (!cuda_available()) EXPECT_THROW(make_backend(DeviceKind::Cuda, *model, BackendOptions{1, 1}), Error);
    EXPECT_EQ(make_backend(DeviceKind::Auto, *model, BackendOptions{1, 1})->name().starts_with("cuda"),
              cuda_available());
}

// Auto never picks a backend that cannot compute the model: Mamba-2, and k-quant matrices, stay on the CPU
// even with a GPU; asking for CUDA explicitly is an error that says why.
TEST(BackendFactory, AutoChoosesTheCpuForModelsCudaDoesNotCompute) {
    const TempModelFile mamba2(test::tiny_mamba2_hparams_byte_vocab(), GgmlType::F32);
    const auto m2 = Model::load(mamba2.path());
    EXPECT_EQ(make_backend(DeviceKind::Auto, *m2, BackendOptions{1, 1})->name(), "cpu");
    EXPECT_THROW(make_backend(DeviceKind::Cuda, *m2, BackendOptions{1, 1}), Error);
    const TempModelFile k_quant(test::tiny_hparams_k_quants(), GgmlType::Q4_K);
    const auto q = Model::load(k_quant.path());
    EXPECT_EQ(make_backend(DeviceKind::Auto, *q, BackendOptions{1, 1})->name(), "cpu");
}

TEST(CpuRandomModel, DeepModelsKeepActivationsFinite) {
    // Mamba-2.8B's depth at a tiny width: the writer's scales must not blow up or vanish over 64 layers.
    ModelHparams hp = test::tiny_hparams_any_length();
    hp.n_layer = 64;
    const TempModelFile file(hp, GgmlType::F16, 9, true);
    const auto model = Model::load(file.path());
    const std::vector<int32_t> tokens = some_tokens(64, hp.n_vocab);
    std::vector<float> logits(tokens.size() * hp.n_vocab);
    cpu(*model)->prefill(0, tokens, logits, true);
    float lowest = logits[0], highest = logits[0];
    for (float v : logits) {
        ASSERT_TRUE(std::isfinite(v));
        lowest = std::min(lowest, v);
        highest = std::max(highest, v);
    }
    EXPECT_GT(highest - lowest, 0.1f);
    EXPECT_LT(highest - lowest, 100.0f);
}

// ---- State management ----

class CpuStates : public ::testing::Test {
protected:
    CpuStates()
        : hp_(test::tiny_hparams_any_length()), file_(hp_, GgmlType::F16), model_(Model::load(file_.path())) {}
    ModelHparams hp_;
    TempModelFile file_;
    std::unique_ptr<Model> model_;
};

TEST_F(CpuStates, RestoredStateContinuesBitIdentically) {
    const std::vector<int32_t> prompt = some_tokens(17, hp_.n_vocab);
    auto a = cpu(*model_, 2);
    std::vector<float> logits(hp_.n_vocab);
    a->prefill(0, prompt, logits, false);
    const SequenceState saved = state_of(*a, 0);
    const std::vector<float> uninterrupted = decode_one(*a, 0, 9);

    auto b = cpu(*model_, 2);
    b->write_state(1, saved);
    EXPECT_TRUE(same_state(state_of(*b, 1), saved));
    EXPECT_TRUE(same_bits(decode_one(*b, 1, 9), uninterrupted));
}

TEST_F(CpuStates, CopyStateForksASequence) {
    auto b = cpu(*model_, 3);
    std::vector<float> logits(hp_.n_vocab);
    b->prefill(0, some_tokens(9, hp_.n_vocab), logits, false);
    b->copy_state(0, 2);
    EXPECT_TRUE(same_state(state_of(*b, 0), state_of(*b, 2)));
    EXPECT_TRUE(same_bits(decode_one(*b, 0, 4), decode_one(*b, 2, 4)));
}

TEST_F(CpuStates, ResetGivesAFreshSequence) {
    auto b = cpu(*model_);
    const std::vector<float> fresh = decode_one(*b, 0, 11);
    b->reset(0);
    EXPECT_TRUE(same_state(state_of(*b, 0), SequenceState::zeros(hp_)));
    EXPECT_TRUE(same_bits(decode_one(*b, 0, 11), fresh));
}

TEST_F(CpuStates, StateHasTheModelsShape) {
    const SequenceState s = state_of(*cpu(*model_), 0);
    EXPECT_TRUE(s.matches(hp_));
    EXPECT_EQ(s.bytes(), static_cast<size_t>(hp_.n_layer * ((hp_.d_conv - 1) + hp_.d_state) * hp_.d_inner) * 4);
}

TEST_F(CpuStates, BadRequestsAreErrors) {
    auto b = cpu(*model_, 2);
    std::vector<float> logits(2 * hp_.n_vocab);
    const std::vector<int32_t> bad_token = {static_cast<int32_t>(hp_.n_vocab)};
    EXPECT_THROW(b->prefill(0, bad_token, logits, false), Error);
    EXPECT_THROW(b->prefill(2, some_tokens(2, hp_.n_vocab), logits, false), Error);
    EXPECT_THROW(b->prefill(0, {}, logits, false), Error);
    std::vector<float> small(hp_.n_vocab - 1);
    EXPECT_THROW(b->prefill(0, some_tokens(2, hp_.n_vocab), small, false), Error);
    const int dup[] = {1, 1};
    const int32_t toks[] = {1, 2};
    EXPECT_THROW(b->decode(dup, toks, logits), Error);
    EXPECT_THROW(b->reset(-1), Error);
    ModelHparams other = hp_;
    other.d_state += 1;
    EXPECT_THROW(b->write_state(0, SequenceState::zeros(other)), Error);
    // Nothing was changed by the rejected calls.
    EXPECT_TRUE(same_state(state_of(*b, 0), SequenceState::zeros(hp_)));
    EXPECT_THROW(make_cpu_backend(*model_, BackendOptions{-1, 1}), Error);
    EXPECT_THROW(make_cpu_backend(*model_, BackendOptions{1 << 20, 1}), Error);
    EXPECT_THROW(make_cpu_backend(*model_, BackendOptions{1, 0}), Error);
}

TEST_F(CpuStates, WeightBytesCountWhatADecodeStepReads) {
    auto b = cpu(*model_);
    const ModelWeights& w = model_->weights();
    uint64_t matrices = w.output.nbytes + w.token_embd.row_bytes();
    for (const LayerWeights& layer : w.layers) {
        const Mamba1Mixer& l = layer.mamba1();
        matrices += l.ssm_in.nbytes + l.ssm_x.nbytes + l.ssm_dt_w.nbytes + l.ssm_out.nbytes;
    }
    // Plus the fp32 vectors: norms, conv taps and bias, dt bias, A, D.
    const int64_t per_layer = hp_.d_model + hp_.d_conv * hp_.d_inner + 3 * hp_.d_inner + hp_.d_state * hp_.d_inner;
    EXPECT_EQ(b->weight_bytes_per_token(), matrices + 4 * (hp_.n_layer * per_layer + hp_.d_model));
    EXPECT_GE(b->device_memory_bytes(), model_->weight_bytes());
}

}  // namespace
}  // namespace dendro
