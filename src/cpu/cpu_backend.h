// The CPU backend: the numerical reference of Dendro and its decode path on machines without a GPU.
// Each layer's mixer computes in its own file (mixer_mamba1.cpp, mixer_mamba2.cpp); this one holds the
// sequence slots, the embedding, the residual stream and the logits.
// Weight matrices are used in place in the model's mapping (dequantized on the fly); the small per-layer
// vectors are kept as fp32 copies. Decode, batched decode and prefill all run one forward routine over a
// batch of token rows, so a token's arithmetic is the same whichever way it is computed (see cpu_matmul.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "backend/backend.h"
#include "cpu/mixer.h"
#include "cpu/mixer_mamba1.h"
#include "cpu/mixer_mamba2.h"
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
    int64_t exact_prefill_split() const override;
    uint64_t weight_bytes_per_token() const override;
    uint64_t device_memory_bytes() const override;

private:
    // A layer as the CPU computes it: its norm weight as fp32 and its mixer.
    struct CpuLayer {
        std::vector<float> attn_norm;
        std::variant<cpu::Mamba1CpuLayer, cpu::Mamba2CpuLayer> mixer;
    };
    // Batch rows [first_row, first_row + n_rows) whose logits a pass writes to `logits` (n_rows * n_vocab).
    struct LogitRows {
        int64_t first_row = 0;
        int64_t n_rows = 0;  // 0: no logits
        float* logits = nullptr;
    };

    void reserve_rows(int64_t n_rows, int64_t n_chunks);
    void embed(std::span<const int32_t> tokens);
    // Every layer over the batch, then the logits of `wanted`, in one task of the thread pool.
    void forward(std::span<const cpu::SeqSpan> spans, int64_t n_rows, const LogitRows& wanted);
    // Rows [first_row, first_row + n_rows) of the residual stream normalised with `weight`, as thread `thread`
    // of forward's task sees them: its own copy of a small batch, or the shared buffer after a barrier.
    const float* normalise_rows(int64_t first_row, int64_t n_rows, const std::vector<float>& weight, int thread,
                                int n_threads);
    // Final norm and lm_head of the wanted rows, as run by thread `thread` (inside forward's task).
    void compute_logits(const LogitRows& wanted, int thread, int n_threads);
    uint64_t fp32_vector_bytes() const;

    const Model& model_;
    ModelHparams hp_;
    ThreadPool pool_;
    std::vector<CpuLayer> layers_;
    std::vector<float> output_norm_;
    std::vector<SequenceState> slots_;

    // Activations of the current batch, one row per token: the residual stream and its normalised copy, and
    // each mixer kind's own.
    int64_t capacity_rows_ = 0;
    std::vector<float> resid_, normed_;
    std::vector<float> private_normed_;  // per pool thread: cpu::kPrivateNormRows normalised rows
    cpu::Mamba1Scratch mamba1_;
    cpu::Mamba2Scratch mamba2_;
    // decode()'s one-token spans, kept so that a decode step allocates nothing once warm.
    std::vector<cpu::SeqSpan> decode_spans_;
};

}  // namespace dendro
