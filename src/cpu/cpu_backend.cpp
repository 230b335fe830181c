// The CPU backend's forward pass (HF MambaForCausalLM in fp32) and sequence-slot management.
#include "cpu/cpu_backend.h"

#include <algorithm>

#include "backend/backend_arguments.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/topology.h"
#include "common/error.h"

namespace dendro {
namespace {

// Prompt tokens run through the layers together: enough to read each weight row once per many tokens,
// few enough that the activations stay small (about 130 KiB per token for Mamba-2.8B).
constexpr int64_t kPrefillChunk = 256;

std::vector<float> to_f32(const TensorView& t) {
    if (!t.present()) return {};
    std::vector<float> values(static_cast<size_t>(t.row_length() * t.n_rows()));
    for (int64_t r = 0; r < t.n_rows(); ++r) {
        dequantize_row(t.type, t.row(r), values.data() + r * t.row_length(), t.row_length());
    }
    return values;
}

size_t vector_bytes(const std::vector<float>& v) { return v.size() * sizeof(float); }

int resolve_thread_count(int requested) {
    if (requested < 0 || requested > kMaxThreads) {
        fail("invalid thread count ", requested, " (0 means one per core; at most ", kMaxThreads, ")");
    }
    return requested > 0 ? requested : default_thread_count();
}

}  // namespace

CpuBackend::CpuBackend(const Model& model, const BackendOptions& options)
    : model_(model), hp_(model.hparams()), pool_(resolve_thread_count(options.n_threads)) {
    if (options.n_seq_max < 1) fail("invalid number of sequence slots ", options.n_seq_max);

    const ModelWeights& w = model.weights();
    // Checked here, before any pass: a thread that threw inside the pool's task would leave the others
    // waiting at a barrier.
    const auto check_matrix = [](const TensorView& m) {
        if (m.present() && !cpu::supported_matrix_type(m.type)) {
            fail("tensor ", m.name, ": the CPU backend cannot compute with weight matrices of type ",
                 ggml_type_name(m.type));
        }
    };
    check_matrix(w.output);
    for (const Mamba1LayerWeights& l : w.layers) {
        for (const TensorView* m : {&l.ssm_in, &l.ssm_x, &l.ssm_dt_w, &l.ssm_out}) check_matrix(*m);
    }
    layers_.reserve(w.layers.size());
    for (const Mamba1LayerWeights& l : w.layers) {
        layers_.push_back(LayerVectors{to_f32(l.attn_norm), to_f32(l.ssm_in_b), to_f32(l.conv1d_w),
                                       to_f32(l.conv1d_b), to_f32(l.ssm_dt_b), to_f32(l.ssm_a), to_f32(l.ssm_d),
                                       to_f32(l.ssm_out_b)});
    }
    output_norm_ = to_f32(w.output_norm);
    slots_.assign(static_cast<size_t>(options.n_seq_max), SequenceState::zeros(hp_));
}

void CpuBackend::reset(int seq) {
    check_sequence_slot(seq, n_seq_max(), "reset");
    std::fill(slots_[seq].conv.begin(), slots_[seq].conv.end(), 0.0f);
    std::fill(slots_[seq].ssm.begin(), slots_[seq].ssm.end(), 0.0f);
}

void CpuBackend::read_state(int seq, SequenceState& out) const {
    check_sequence_slot(seq, n_seq_max(), "read_state");
    out = slots_[seq];
}

void CpuBackend::write_state(int seq, const SequenceState& in) {
    check_sequence_slot(seq, n_seq_max(), "write_state");
    check_state_fits(hp_, in, "write_state");
    slots_[seq] = in;
}

void CpuBackend::copy_state(int src, int dst) {
    check_sequence_slot(src, n_seq_max(), "copy_state");
    check_sequence_slot(dst, n_seq_max(), "copy_state");
    if (src != dst) slots_[dst] = slots_[src];
}

void CpuBackend::reserve_rows(int64_t n_rows) {
    if (n_rows <= capacity_rows_) return;
    const auto rows = static_cast<size_t>(n_rows);
    resid_.resize(rows * hp_.d_model);
    normed_.resize(rows * hp_.d_model);
    xz_.resize(rows * 2 * hp_.d_inner);
    xc_.resize(rows * hp_.d_inner);
    xdbc_.resize(rows * (hp_.dt_rank + 2 * hp_.d_state));
    dt_.resize(rows * hp_.d_inner);
    y_.resize(rows * hp_.d_inner);
    out_.resize(rows * hp_.d_model);
    capacity_rows_ = n_rows;
}

void CpuBackend::embed(std::span<const int32_t> tokens) {
    const TensorView& embd = model_.weights().token_embd;
    for (size_t i = 0; i < tokens.size(); ++i) {
        dequantize_row(embd.type, embd.row(tokens[i]), resid_.data() + i * hp_.d_model, hp_.d_model);
    }
}

void CpuBackend::prefill(int seq, std::span<const int32_t> tokens, std::span<float> logits, bool all_logits) {
    check_prefill_arguments(hp_, n_seq_max(), seq, tokens, logits.size(), all_logits);
    const auto n_tokens = static_cast<int64_t>(tokens.size());

    reserve_rows(std::min(n_tokens, kPrefillChunk));
    for (int64_t start = 0; start < n_tokens; start += kPrefillChunk) {
        const int64_t n = std::min(kPrefillChunk, n_tokens - start);
        embed(tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(n)));
        const SeqSpan span{seq, 0, n};
        LogitRows wanted;  // none for a chunk before the last unless every position's logits are asked for
        if (all_logits) {
            wanted = {0, n, logits.data() + start * hp_.n_vocab};
        } else if (start + n == n_tokens) {
            wanted = {n - 1, 1, logits.data()};
        }
        forward({&span, 1}, n, wanted);
    }
}

void CpuBackend::decode(std::span<const int> seqs, std::span<const int32_t> tokens, std::span<float> logits) {
    check_batch_arguments(hp_, n_seq_max(), seqs, tokens, "decode");
    if (seqs.empty()) return;
    const auto n = static_cast<int64_t>(seqs.size());
    check_logits_room(logits.size(), static_cast<size_t>(n * hp_.n_vocab), "decode");
    reserve_rows(n);
    embed(tokens);
    decode_spans_.clear();
    for (int64_t i = 0; i < n; ++i) decode_spans_.push_back(SeqSpan{seqs[i], i, 1});
    forward(decode_spans_, n, {0, n, logits.data()});
}

void CpuBackend::forward(std::span<const SeqSpan> spans, int64_t n_rows, const LogitRows& wanted) {
    // One task for the whole pass: each thread takes fixed shares of tokens, channels and rows, and the
    // threads meet only where a step needs what others computed (five barriers a layer, one more for the logits).
    pool_.run([&](int thread, int n_threads) {
        for (int64_t il = 0; il < hp_.n_layer; ++il) run_mixer(il, spans, n_rows, thread, n_threads);
        if (wanted.n_rows > 0) compute_logits(wanted, thread, n_threads);
    });
}

void CpuBackend::run_mixer(int64_t il, std::span<const SeqSpan> spans, int64_t n_rows, int thread, int n_threads) {
    const Mamba1LayerWeights& w = model_.weights().layers[il];
    const LayerVectors& v = layers_[il];
    const int64_t d_model = hp_.d_model, d_inner = hp_.d_inner, d_state = hp_.d_state, d_conv = hp_.d_conv;
    const int64_t dt_rank = hp_.dt_rank, n_xdbc = dt_rank + 2 * d_state, n_xz = 2 * d_inner;
    // This thread's channels: its rows of in_proj (x and z halves) and dt_proj, its conv and scan channels.
    const cpu::Range channels = cpu::thread_share(d_inner, thread, n_threads);

    for (int64_t r = thread; r < n_rows; r += n_threads) {
        cpu::rms_norm(resid_.data() + r * d_model, v.attn_norm.data(), d_model, hp_.norm_eps,
                      normed_.data() + r * d_model);
    }
    pool_.barrier();
    for (const int64_t half : {int64_t{0}, d_inner}) {
        cpu::matmul_rows(w.ssm_in, {normed_.data(), d_model}, n_rows, {xz_.data(), n_xz}, half + channels.begin,
                         half + channels.end);
        if (!v.in_bias.empty()) {
            for (int64_t r = 0; r < n_rows; ++r) {
                for (int64_t i = half + channels.begin; i < half + channels.end; ++i) xz_[r * n_xz + i] += v.in_bias[i];
            }
        }
    }
    for (const SeqSpan& s : spans) {
        for (int64_t c = channels.begin; c < channels.end; ++c) {
            const float bias = v.conv_bias.empty() ? 0.0f : v.conv_bias[c];
            float* window = slots_[s.slot].conv_layer(il) + c;
            cpu::conv_silu_channel(v.conv_taps.data() + c * d_conv, d_conv, bias, {window, d_inner},
                                   {xz_.data() + s.first_row * n_xz + c, n_xz},
                                   {xc_.data() + s.first_row * d_inner + c, d_inner}, s.n_tokens);
        }
    }
    pool_.barrier();

    const cpu::Range xdbc_rows = cpu::thread_share(n_xdbc, thread, n_threads);
    cpu::matmul_rows(w.ssm_x, {xc_.data(), d_inner}, n_rows, {xdbc_.data(), n_xdbc}, xdbc_rows.begin, xdbc_rows.end);
    pool_.barrier();
    if (hp_.dt_b_c_rms) {
        for (int64_t r = thread; r < n_rows; r += n_threads) {
            float* row = xdbc_.data() + r * n_xdbc;
            cpu::rms_norm(row, nullptr, dt_rank, hp_.mixer_rms_eps, row);
            cpu::rms_norm(row + dt_rank, nullptr, d_state, hp_.mixer_rms_eps, row + dt_rank);
            cpu::rms_norm(row + dt_rank + d_state, nullptr, d_state, hp_.mixer_rms_eps, row + dt_rank + d_state);
        }
        pool_.barrier();
    }

    cpu::matmul_rows(w.ssm_dt_w, {xdbc_.data(), n_xdbc}, n_rows, {dt_.data(), d_inner}, channels.begin, channels.end);
    for (const SeqSpan& s : spans) {
        const int64_t r0 = s.first_row;
        for (int64_t c = channels.begin; c < channels.end; ++c) {
            const cpu::ScanChannelInputs in{
                {dt_.data() + r0 * d_inner + c, d_inner},
                {xc_.data() + r0 * d_inner + c, d_inner},
                {xz_.data() + r0 * n_xz + d_inner + c, n_xz},
                {xdbc_.data() + r0 * n_xdbc + dt_rank, n_xdbc},
                {xdbc_.data() + r0 * n_xdbc + dt_rank + d_state, n_xdbc},
            };
            cpu::scan_channel(in, v.a.data() + c * d_state, v.d[c], v.dt_bias[c], d_state,
                              slots_[s.slot].ssm_layer(il) + c * d_state, {y_.data() + r0 * d_inner + c, d_inner},
                              s.n_tokens);
        }
    }
    pool_.barrier();

    const cpu::Range model_rows = cpu::thread_share(d_model, thread, n_threads);
    cpu::matmul_rows(w.ssm_out, {y_.data(), d_inner}, n_rows, {out_.data(), d_model}, model_rows.begin,
                     model_rows.end);
    for (int64_t r = 0; r < n_rows; ++r) {
        float* resid = resid_.data() + r * d_model;
        const float* out = out_.data() + r * d_model;
        for (int64_t i = model_rows.begin; i < model_rows.end; ++i) {
            resid[i] += v.out_bias.empty() ? out[i] : out[i] + v.out_bias[i];
        }
    }
    pool_.barrier();
}

void CpuBackend::compute_logits(const LogitRows& wanted, int thread, int n_threads) {
    const int64_t d_model = hp_.d_model;
    for (int64_t r = thread; r < wanted.n_rows; r += n_threads) {
        cpu::rms_norm(resid_.data() + (wanted.first_row + r) * d_model, output_norm_.data(), d_model, hp_.norm_eps,
                      normed_.data() + r * d_model);
    }
    pool_.barrier();
    const cpu::Range vocab_rows = cpu::thread_share(hp_.n_vocab, thread, n_threads);
    cpu::matmul_rows(model_.weights().output, {normed_.data(), d_model}, wanted.n_rows, {wanted.logits, hp_.n_vocab},
                     vocab_rows.begin, vocab_rows.end);
}

uint64_t CpuBackend::fp32_vector_bytes() const {
    uint64_t total = vector_bytes(output_norm_);
    for (const LayerVectors& v : layers_) {
        for (const std::vector<float>* vec : {&v.attn_norm, &v.in_bias, &v.conv_taps, &v.conv_bias, &v.dt_bias, &v.a,
                                              &v.d, &v.out_bias}) {
            total += vector_bytes(*vec);
        }
    }
    return total;
}

uint64_t CpuBackend::weight_bytes_per_token() const {
    // One embedding row, every matrix once (the lm_head included), and the fp32 vectors.
    const ModelWeights& w = model_.weights();
    uint64_t total = w.token_embd.row_bytes() + w.output.nbytes + fp32_vector_bytes();
    for (const Mamba1LayerWeights& l : w.layers) {
        total += l.ssm_in.nbytes + l.ssm_x.nbytes + l.ssm_dt_w.nbytes + l.ssm_out.nbytes;
    }
    return total;
}

uint64_t CpuBackend::device_memory_bytes() const {
    uint64_t total = model_.weight_bytes() + fp32_vector_bytes();
    for (const SequenceState& s : slots_) total += s.bytes();
    for (const std::vector<float>* buf : {&resid_, &normed_, &xz_, &xc_, &xdbc_, &dt_, &y_, &out_}) {
        total += vector_bytes(*buf);
    }
    return total;
}

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
    return std::make_unique<CpuBackend>(model, options);
}

}  // namespace dendro
