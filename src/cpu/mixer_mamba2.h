// The Mamba-2 (SSD) mixer on the CPU, with HF Mamba2Mixer's numerics in fp32: in_proj split [z, xBC, dt];
// causal depthwise conv + bias + SiLU over xBC; dt = clamp(softplus(dt + dt_bias), time_step_min,
// time_step_max) in prefill and decode alike; per head h <- exp(dt A) h + dt x B^T, y = h C + D x (B and C
// shared by the heads of a group); y * SiLU(z) normalised per group (gated RMSNorm, norm_before_gate false);
// out_proj.
//
// A sequence's tokens run in chunks of kSsdChunk, counted from the first token of each call: a chunk of one
// token takes the recurrence above, a longer one the chunked (matrix) form of SSD — the chunk's outputs from
// its start state and its tokens' pairwise C.B products, then its end state — so that a long prompt costs
// matrix products instead of a token loop. The two forms are the same sum in a different order (see
// docs/mamba2.md for the equalities that hold).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/mixer.h"
#include "model/model.h"

namespace dendro::cpu {

// Tokens per SSD chunk: the pairwise products of a chunk (kSsdChunk^2 per group) stay in L1/L2.
inline constexpr int64_t kSsdChunk = 64;

// Activations of a batch, shared by every Mamba-2 layer.
struct Mamba2Scratch {
    std::vector<float> zxbcdt;  // n_rows x in_proj_rows: in_proj outputs
    std::vector<float> xbc;     // n_rows x conv_channels: after the conv and SiLU
    std::vector<float> y;       // n_rows x d_inner: SSM outputs, then gated and normalised
    std::vector<float> out;     // n_rows x d_model
    std::vector<float> gram;    // chunks x n_group x kSsdChunk^2: C_t . B_s of each multi-token chunk
    std::vector<float> packed;  // chunks x n_group x (B, C) x kSsdChunk x d_state: the chunk's B and C rows, contiguous
    std::vector<float> per_thread;  // per thread: a ChunkWork in the scan, then a small batch's gated norm
    size_t per_thread_floats = 0;
    int n_threads = 0;
    void reserve(const ModelHparams& hp, int64_t n_rows, int64_t n_chunks, int n_threads);
    uint64_t bytes() const;
    float* thread_buffer(int thread) { return per_thread.data() + static_cast<size_t>(thread) * per_thread_floats; }
};

// One thread's buffers for a chunk of one head.
struct ChunkWork {
    float* dt;                // kSsdChunk: dt_t
    float* decay;             // kSsdChunk: cum_t = sum_{i<=t} dt_i A; h decays by exp(cum_t - cum_s) from s to t
    float* weights;           // kSsdChunk^2: the token pairs' weights, a row per token
    float* state_by_channel;  // d_state x head_dim: the start state transposed
    float* scaled_x;          // kSsdChunk x head_dim: x_s times the end state's weight of s
    float* coef_by_channel;   // head_dim x kSsdChunk: the end state's coefficients, a row per channel
    static size_t floats(const ModelHparams& hp);
    ChunkWork(const ModelHparams& hp, float* buffer);
};

// The multi-token chunks of a batch, in order: for span i, chunks of kSsdChunk tokens from its first row.
int64_t count_multi_token_chunks(std::span<const SeqSpan> spans);

class Mamba2CpuLayer {
public:
    Mamba2CpuLayer(const ModelHparams& hp, const Mamba2Mixer& weights);
    void forward(const MixerBatch& batch, Mamba2Scratch& scratch, const Team& team) const;
    uint64_t vector_bytes() const;
    const Mamba2Mixer& weights() const { return w_; }

private:
    // One chunk of `n` tokens (rows r0..r0+n-1) of head `head`, from and to the state h (head_dim x d_state).
    void recurrent_step(Mamba2Scratch& s, int64_t row, int64_t head, float* h) const;
    // `gram`, `b` and `c` are the chunk's C.B products and its packed B and C rows (n x d_state each).
    void ssd_chunk(Mamba2Scratch& s, const float* gram, const float* b, const float* c, int64_t r0, int64_t n,
                   int64_t head, float* h, const ChunkWork& w) const;
    float time_step(const Mamba2Scratch& s, int64_t row, int64_t head) const;

    const ModelHparams& hp_;
    const Mamba2Mixer& w_;
    std::vector<float> in_bias_, conv_taps_by_slot_, conv_bias_, dt_bias_, a_, d_, norm_, out_bias_;
};

}  // namespace dendro::cpu
