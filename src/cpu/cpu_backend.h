// The CPU backend: the numerical reference of Dendro and its decode path on machines without a GPU.
// Weight matrices are used in place in the model's mapping (dequantized on the fly); the small per-layer
// vectors are kept as fp32 copies. Decode, batched decode and prefill all run one forward routine over a
// batch of token rows, so a token's arithmetic is the same whichever way it is computed (see cpu_matmul.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/thread_pool.h"

namespace dendro {

class CpuBackend final : public Backend {
public:
    CpuBackend(const Model& model, const BackendOptions& options);

    std::string name() const override { return "cpu"; }
    const ModelHparams& hparams() const override { return hp_; }
    int n_seq_max() const override { return static_cast<int>(slots_.size()); }
    int n_threads() const { return pool_.size(); }

    void reset(int seq) override;
    void prefill(int seq, std::span<const int32_t> tokens, std::span<float> logits, bool all_logits) override;
    void decode(std::span<const int> seqs, std::span<const int32_t> tokens, std::span<float> logits) override;
    void read_state(int seq, SequenceState& out) const override;
    void write_state(int seq, const SequenceState& in) override;
    void copy_state(int src, int dst) override;
    uint64_t weight_bytes_per_token() const override;
    uint64_t device_memory_bytes() const override;

private:
    // The per-layer vectors as fp32 (empty when an optional tensor is absent).
    struct LayerVectors {
        std::vector<float> attn_norm, in_bias, conv_taps, conv_bias, dt_bias, a, d, out_bias;
    };
    // The tokens of one sequence inside the current batch: rows [first_row, first_row + n_tokens).
    struct SeqSpan {
        int slot;
        int64_t first_row;
        int64_t n_tokens;
    };

    void reserve_rows(int64_t n_rows);
    void embed(std::span<const int32_t> tokens);
    // Batch rows [first_row, first_row + n_rows) whose logits a pass writes to `logits` (n_rows * n_vocab).
    struct LogitRows {
        int64_t first_row = 0;
        int64_t n_rows = 0;  // 0: no logits
        float* logits = nullptr;
    };

    // Every layer over the batch, then the logits of `wanted`, in one task of the thread pool.
    void forward(std::span<const SeqSpan> spans, int64_t n_rows, const LogitRows& wanted);
    // Layer il, as run by thread `thread` of the pool's n_threads (inside forward's task).
    void run_mixer(int64_t il, std::span<const SeqSpan> spans, int64_t n_rows, int thread, int n_threads);
    // Final norm and lm_head of the wanted rows, as run by thread `thread` (inside forward's task).
    void compute_logits(const LogitRows& wanted, int thread, int n_threads);
    uint64_t fp32_vector_bytes() const;

    const Model& model_;
    ModelHparams hp_;
    ThreadPool pool_;
    std::vector<LayerVectors> layers_;
    std::vector<float> output_norm_;
    std::vector<SequenceState> slots_;

    // Activations of the current batch, one row per token.
    int64_t capacity_rows_ = 0;
    std::vector<float> resid_, normed_, xz_, xc_, xdbc_, dt_, y_, out_;
    // decode()'s one-token spans, kept so that a decode step allocates nothing once warm.
    std::vector<SeqSpan> decode_spans_;
};

}  // namespace dendro
