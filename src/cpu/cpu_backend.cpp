// The CPU backend's forward pass (embedding, each layer's norm and mixer, final norm and lm_head) and
// sequence-slot management.
#include "cpu/cpu_backend.h"

#include <algorithm>
#include <type_traits>

#include "backend/backend_arguments.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/topology.h"
#include "cpu/weight_vectors.h"
#include "common/error.h"

namespace dendro {
namespace {

// Prompt tokens run through the layers together: enough to read each weight row once per many tokens,
// few enough that the activations stay small (about 130 KiB per token for Mamba-2.8B).
constexpr int64_t kPrefillChunk = 256;
// Mamba-2's chunks are counted from the first token of each pass: a whole number of them per prefill pass
// makes a long prompt's chunks those of one uninterrupted pass.
static_assert(kPrefillChunk % cpu::kSsdChunk == 0);

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
    layers_.reserve(w.layers.size());
    for (const LayerWeights& l : w.layers) {
        for (const TensorView* m : layer_matrices(l)) check_matrix(*m);
        layers_.push_back(CpuLayer{cpu::to_f32(l.attn_norm), std::visit([&](const auto& mixer) {
                                       using Weights = std::decay_t<decltype(mixer)>;
                                       using Layer = std::conditional_t<std::is_same_v<Weights, Mamba1Mixer>,
                                                                        cpu::Mamba1CpuLayer, cpu::Mamba2CpuLayer>;
                                       return std::variant<cpu::Mamba1CpuLayer, cpu::Mamba2CpuLayer>(
                                           std::in_place_type<Layer>, hp_, mixer);
                                   }, l.mixer)});
    }
    output_norm_ = cpu::to_f32(w.output_norm);
    private_normed_.resize(static_cast<size_t>(pool_.size() * cpu::kPrivateNormRows * hp_.d_model));
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

void CpuBackend::reserve_rows(int64_t n_rows, int64_t n_chunks) {
    if (hp_.arch == Architecture::Mamba2) mamba2_.reserve(hp_, n_rows, n_chunks, pool_.size());
    if (n_rows <= capacity_rows_) return;
    const auto rows = static_cast<size_t>(n_rows);
    resid_.resize(rows * hp_.d_model);
    normed_.resize(rows * hp_.d_model);
    if (hp_.arch == Architecture::Mamba1) mamba1_.reserve(hp_, n_rows);
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

    for (int64_t start = 0; start < n_tokens; start += kPrefillChunk) {
        const int64_t n = std::min(kPrefillChunk, n_tokens - start);
        const cpu::SeqSpan span{seq, 0, n};
        reserve_rows(n, cpu::count_multi_token_chunks({&span, 1}));
        embed(tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(n)));
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
    reserve_rows(n, 0);
    embed(tokens);
    decode_spans_.clear();
    for (int64_t i = 0; i < n; ++i) decode_spans_.push_back(cpu::SeqSpan{seqs[i], i, 1});
    forward(decode_spans_, n, {0, n, logits.data()});
}

void CpuBackend::forward(std::span<const cpu::SeqSpan> spans, int64_t n_rows, const LogitRows& wanted) {
    // One task for the whole pass: each thread takes fixed shares of tokens, channels and rows, and the
    // threads meet only where a step needs what others computed.
    pool_.run([&](int thread, int n_threads) {
        const cpu::Team team{pool_, thread, n_threads};
        for (int64_t il = 0; il < hp_.n_layer; ++il) {
            const CpuLayer& layer = layers_[il];
            const float* normed = normalise_rows(0, n_rows, layer.attn_norm, thread, n_threads);
            const cpu::MixerBatch batch{spans, n_rows, normed, resid_.data(), slots_, il};
            std::visit([&](const auto& mixer) {
                if constexpr (std::is_same_v<std::decay_t<decltype(mixer)>, cpu::Mamba1CpuLayer>) {
                    mixer.forward(batch, mamba1_, team);
                } else {
                    mixer.forward(batch, mamba2_, team);
                }
            }, layer.mixer);
        }
        if (wanted.n_rows > 0) compute_logits(wanted, thread, n_threads);
    });
}

const float* CpuBackend::normalise_rows(int64_t first_row, int64_t n_rows, const std::vector<float>& weight, int thread,
                                       int n_threads) {
    const int64_t d_model = hp_.d_model;
    const float* rows = resid_.data() + first_row * d_model;
    if (n_rows <= cpu::kPrivateNormRows) {
        float* own = private_normed_.data() + thread * cpu::kPrivateNormRows * d_model;
        for (int64_t r = 0; r < n_rows; ++r) cpu::rms_norm(rows + r * d_model, weight.data(), d_model, hp_.norm_eps, own + r * d_model);
        return own;
    }
    for (int64_t r = thread; r < n_rows; r += n_threads) {
        cpu::rms_norm(rows + r * d_model, weight.data(), d_model, hp_.norm_eps, normed_.data() + r * d_model);
    }
    pool_.barrier();
    return normed_.data();
}

void CpuBackend::compute_logits(const LogitRows& wanted, int thread, int n_threads) {
    const float* normed = normalise_rows(wanted.first_row, wanted.n_rows, output_norm_, thread, n_threads);
    cpu::matmul_team_rows(model_.weights().output, {normed, hp_.d_model}, wanted.n_rows, {wanted.logits, hp_.n_vocab},
                          cpu::Team{pool_, thread, n_threads});
}

uint64_t CpuBackend::fp32_vector_bytes() const {
    uint64_t total = cpu::float_bytes({&output_norm_});
    for (const CpuLayer& l : layers_) {
        total += cpu::float_bytes({&l.attn_norm});
        total += std::visit([](const auto& mixer) { return mixer.vector_bytes(); }, l.mixer);
    }
    return total;
}

int64_t CpuBackend::exact_prefill_split() const {
    return hp_.arch == Architecture::Mamba2 ? cpu::kSsdChunk : 1;
}

uint64_t CpuBackend::weight_bytes_per_token() const {
    // One embedding row, every matrix once (the lm_head included), and the fp32 vectors.
    const ModelWeights& w = model_.weights();
    uint64_t total = w.token_embd.row_bytes() + w.output.nbytes + fp32_vector_bytes();
    for (const LayerWeights& l : w.layers) {
        for (const TensorView* m : layer_matrices(l)) total += m->nbytes;
    }
    return total;
}

uint64_t CpuBackend::device_memory_bytes() const {
    uint64_t total = model_.weight_bytes() + fp32_vector_bytes() + cpu::float_bytes({&resid_, &normed_, &private_normed_}) +
                     mamba1_.bytes() + mamba2_.bytes();
    for (const SequenceState& s : slots_) total += s.bytes();
    return total;
}

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
    return std::make_unique<CpuBackend>(model, options);
}

}  // namespace dendro
