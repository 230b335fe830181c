#include "cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "backend/backend_arguments.h"
#include "ops/conv1d.h"
#include "mamba1/conv_x_proj.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_graph.h"
#include "runtime/device_buffer.h"
#include "weights/device_model.h"
#include "ops/embedding.h"
#include "common/error.h"
#include "linear/gemm.h"
#include "linear/gemv.h"
#include "mamba2/mamba2_mixer.h"
#include "linear/projection.h"
#include "ops/rms_norm.h"
#include "ops/sampled_tokens.h"
#include "ops/sampling.h"
#include "mamba1/selective_scan.h"
#include "mamba1/ssm_decode.h"

namespace dendro {
namespace {

using cuda::check;

// Prompt tokens per pass through the layers: long enough for the GEMMs to run near tensor-core peak, short
// enough that the activations stay a few hundred MiB at the largest Mamba-1 shapes (about 150 KiB a token).
constexpr int64_t kPrefillChunk = 2048;
// Rows of logits computed at once when a prefill returns every position's logits.
constexpr int64_t kLogitsChunk = 256;
// Sequences per decode graph launch. Up to kMaxGemvBatch the projections are GEMVs (fp32 activations);
// above, cuBLAS GEMMs on the weights' 16-bit type, whose scratch and workspace the constructor reserves so
// that the capture of a decode graph never allocates (one graph per batch size, captured on first use).
constexpr int kMaxDecodeBatch = 64;
static_assert(kMaxDecodeBatch <= cuda::kMaxSsmDecodeBatch);

// What the host hands a decode step, copied to the device inside the captured graph.
struct DecodeInputs {
    int32_t tokens[kMaxDecodeBatch];
    int32_t slots[kMaxDecodeBatch];
    cuda::SamplingConfig sampling;
};

class Stream {
public:
    Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating the backend's stream"); }
    ~Stream() { cudaStreamDestroy(stream_); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return stream_; }

private:
    cudaStream_t stream_ = nullptr;
};

int checked_slot_count(const BackendOptions& options) {
    if (options.n_seq_max < 1) fail("invalid number of sequence slots ", options.n_seq_max);
    return options.n_seq_max;
}

int select_device() {
    const int count = cuda_device_count();
    if (count == 0) fail("CUDA backend requested but no CUDA device is available (no GPU or no driver)");
    check(cudaSetDevice(0), "selecting CUDA device 0");
    return 0;
}

class CudaBackend final : public Backend {
public:
    CudaBackend(const Model& model, const BackendOptions& options);
    ~CudaBackend() override { cudaStreamSynchronize(stream_.get()); }

    std::string name() const override { return name_; }
    const ModelHparams& hparams() const override { return hp_; }
    int n_seq_max() const override { return n_seq_max_; }

    void reset(int seq) override;
    void prefill(int seq, std::span<const int32_t> tokens, std::span<float> logits, bool all_logits) override;
    void decode(std::span<const int> seqs, std::span<const int32_t> tokens, std::span<float> logits) override;
    bool decode_sample(std::span<const int> seqs, std::span<const int32_t> tokens, const DeviceSampling& sampling,
                       std::span<int32_t> next_tokens) override;
    void read_state(int seq, SequenceState& out) const override;
    void write_state(int seq, const SequenceState& in) override;
    void copy_state(int src, int dst) override;
    uint64_t weight_bytes_per_token() const override { return weights_.bytes_per_token(); }
    uint64_t device_memory_bytes() const override;

private:
    // Which kernels carry the conv window and SSM state: prefill of one slot, or decode of a batch of slots.
    struct Rows {
        int64_t n = 0;
        int prefill_slot = -1;  // >= 0: prefill of this slot; < 0: decode, slots in decode_inputs_
    };

    float* conv_state(int slot, int64_t layer) const;
    float* ssm_state(int slot, int64_t layer) const;
    void run_layers(const Rows& rows);
    void run_mixer(int64_t layer, const Rows& rows);
    // Mamba-2's mixer (mamba2/mamba2_mixer.h) from the normed rows in xn_ to out_.
    void run_mamba2_mixer(int64_t layer, const Rows& rows);
    // Mamba-1 decode in the GEMV regime: conv fused into x_proj, residual adds into out_proj, norms into the
    // next GEMV. Mamba-2's mixer writes out_ and leaves the residual add to the next norm, so it never is.
    bool gemv_decode(const Rows& rows) const {
        return !mamba2_ && rows.prefill_slot < 0 && rows.n <= cuda::kMaxGemvBatch;
    }
    // An RMSNorm (weight `weight`) folded into a GEMV of n rows that reads the residual stream h_.
    cuda::GemvFusion folded_norm(const float* weight, int64_t n) const;
    // Final residual add, norm and lm_head for rows [first, first + n) into logits_; after a gemv_decode step
    // the residual is already in h_ and the norm folds into the lm_head GEMV.
    void compute_logits(int64_t first, int64_t n, bool after_gemv_decode);
    // Issues one decode step of n sequences whose inputs are in pinned_inputs_; with `sample`, ends with the
    // sampled tokens in pinned_tokens_, else with the logits in pinned_logits_.
    void issue_decode_step(int n, bool sample);
    void run_decode_step(std::span<const int> seqs, std::span<const int32_t> tokens,
                         const cuda::SamplingConfig& sampling, bool sample);
    void synchronize(const char* what) const;

    ModelHparams hp_;
    int device_;
    std::string name_;
    int n_seq_max_;
    Stream stream_;
    cuda::DeviceModel weights_;
    cuda::Gemm gemm_;
    int64_t conv_per_slot_, ssm_per_slot_;
    cuda::DeviceBuffer conv_states_, ssm_states_, rng_counters_;
    int64_t x_dbl_width_;
    cuda::DeviceBuffer tokens_, h_, xn_, xz_, xc_, x_dbl_, dt_, y_, out_, logits_;
    // Decode of up to kMaxGemvBatch rows: conv_x_proj's partial sums, and out_proj's per-block sums of squares
    // of the residual stream (the next GEMV folds the RMSNorm into its load: kernels/linear/gemv.h).
    cuda::DeviceBuffer x_dbl_partials_, residual_squares_;
    cuda::DeviceBuffer decode_inputs_, sampled_tokens_;
    cuda::PinnedBuffer pinned_inputs_, pinned_tokens_, pinned_logits_;
    std::map<std::pair<int, bool>, std::unique_ptr<cuda::CudaGraph>> decode_graphs_;
    std::unique_ptr<cuda::Mamba2Workspace> mamba2_;  // Mamba-2 models only
};

CudaBackend::CudaBackend(const Model& model, const BackendOptions& options)
    : hp_(model.hparams()), device_(select_device()), n_seq_max_(checked_slot_count(options)), weights_(model),
      gemm_(stream_.get()) {
    cudaDeviceProp props{};
    check(cudaGetDeviceProperties(&props, device_), "reading the device's properties");
    name_ = concat("cuda:", device_, " (", props.name, ")");

    conv_per_slot_ = hp_.n_layer * (hp_.d_conv - 1) * hp_.conv_channels();
    ssm_per_slot_ = hp_.n_layer * hp_.d_inner * hp_.d_state;
    const auto slots = static_cast<size_t>(n_seq_max_);
    conv_states_ = cuda::DeviceBuffer(slots * conv_per_slot_ * sizeof(float), "conv window states");
    ssm_states_ = cuda::DeviceBuffer(slots * ssm_per_slot_ * sizeof(float), "SSM states");
    rng_counters_ = cuda::DeviceBuffer(slots * sizeof(uint64_t), "sampling counters");
    for (int s = 0; s < n_seq_max_; ++s) reset(s);

    x_dbl_width_ = hp_.dt_rank + 2 * hp_.d_state;
    const auto rows = static_cast<size_t>(kPrefillChunk);
    constexpr size_t f = sizeof(float);
    tokens_ = cuda::DeviceBuffer(rows * sizeof(int32_t), "prompt tokens");
    h_ = cuda::DeviceBuffer(rows * hp_.d_model * f, "residual stream");
    xn_ = cuda::DeviceBuffer(rows * hp_.d_model * f, "normed activations");
    xz_ = cuda::DeviceBuffer(rows * hp_.in_proj_rows() * f, "in_proj outputs");
    xc_ = cuda::DeviceBuffer(rows * hp_.conv_channels() * f, "conv outputs");
    x_dbl_ = cuda::DeviceBuffer(rows * x_dbl_width_ * f, "x_proj outputs");
    const auto partial_rows = static_cast<size_t>(cuda::conv_x_proj_max_partials(hp_.d_inner)) * cuda::kMaxGemvBatch;
    x_dbl_partials_ = cuda::DeviceBuffer(partial_rows * x_dbl_width_ * f, "x_proj partial sums");
    residual_squares_ = cuda::DeviceBuffer(cuda::gemv_blocks(hp_.d_model, 1) * cuda::kMaxGemvBatch * f,
                                           "residual sums of squares");
    dt_ = cuda::DeviceBuffer(rows * hp_.d_inner * f, "dt_proj outputs");
    y_ = cuda::DeviceBuffer(rows * hp_.d_inner * f, "SSM outputs");
    out_ = cuda::DeviceBuffer(rows * hp_.d_model * f, "out_proj outputs");
    const auto logit_rows = static_cast<size_t>(std::max<int64_t>(kLogitsChunk, kMaxDecodeBatch));
    logits_ = cuda::DeviceBuffer(logit_rows * hp_.n_vocab * f, "logits");
    decode_inputs_ = cuda::DeviceBuffer(sizeof(DecodeInputs), "decode inputs");
    sampled_tokens_ = cuda::DeviceBuffer(kMaxDecodeBatch * sizeof(int32_t), "sampled tokens");
    pinned_inputs_ = cuda::PinnedBuffer(sizeof(DecodeInputs), "decode inputs");
    pinned_tokens_ = cuda::PinnedBuffer(kMaxDecodeBatch * sizeof(int32_t), "sampled tokens");
    pinned_logits_ = cuda::PinnedBuffer(static_cast<size_t>(kMaxDecodeBatch) * hp_.n_vocab * f, "decode logits");
    std::vector<cuda::DeviceMatrix> matrices{weights_.output()};
    for (const cuda::DeviceLayer& l : weights_.layers()) {
        matrices.insert(matrices.end(), {l.ssm_in, l.ssm_x, l.ssm_dt, l.ssm_out});
    }
    gemm_.reserve(std::max<int64_t>({kPrefillChunk, kLogitsChunk, kMaxDecodeBatch}), matrices);
    if (hp_.arch == Architecture::Mamba2) {
        mamba2_ = std::make_unique<cuda::Mamba2Workspace>(hp_, kPrefillChunk, kMaxDecodeBatch);
    }
    synchronize("initialising the backend");
}

void CudaBackend::synchronize(const char* what) const { check(cudaStreamSynchronize(stream_.get()), what); }

float* CudaBackend::conv_state(int slot, int64_t layer) const {
    return conv_states_.as<float>() + slot * conv_per_slot_ + layer * (hp_.d_conv - 1) * hp_.conv_channels();
}

float* CudaBackend::ssm_state(int slot, int64_t layer) const {
    return ssm_states_.as<float>() + slot * ssm_per_slot_ + layer * hp_.d_inner * hp_.d_state;
}

void CudaBackend::reset(int seq) {
    check_sequence_slot(seq, n_seq_max_, "reset");
    cudaStream_t s = stream_.get();
    check(cudaMemsetAsync(conv_state(seq, 0), 0, conv_per_slot_ * sizeof(float), s), "clearing a conv state");
    check(cudaMemsetAsync(ssm_state(seq, 0), 0, ssm_per_slot_ * sizeof(float), s), "clearing an SSM state");
    check(cudaMemsetAsync(rng_counters_.as<uint64_t>() + seq, 0, sizeof(uint64_t), s), "clearing a sampling counter");
}

void CudaBackend::read_state(int seq, SequenceState& out) const {
    check_sequence_slot(seq, n_seq_max_, "read_state");
    out = SequenceState::zeros(hp_);
    cudaStream_t s = stream_.get();
    check(cudaMemcpyAsync(out.conv.data(), conv_state(seq, 0), conv_per_slot_ * sizeof(float),
                          cudaMemcpyDeviceToHost, s),
          "reading a conv state");
    check(cudaMemcpyAsync(out.ssm.data(), ssm_state(seq, 0), ssm_per_slot_ * sizeof(float), cudaMemcpyDeviceToHost, s),
          "reading an SSM state");
    synchronize("reading a sequence state");
}

void CudaBackend::write_state(int seq, const SequenceState& in) {
    check_sequence_slot(seq, n_seq_max_, "write_state");
    check_state_fits(hp_, in, "write_state");
    cudaStream_t s = stream_.get();
    check(cudaMemcpyAsync(conv_state(seq, 0), in.conv.data(), conv_per_slot_ * sizeof(float),
                          cudaMemcpyHostToDevice, s),
          "writing a conv state");
    check(cudaMemcpyAsync(ssm_state(seq, 0), in.ssm.data(), ssm_per_slot_ * sizeof(float), cudaMemcpyHostToDevice, s),
          "writing an SSM state");
    synchronize("writing a sequence state");  // `in` may go away once we return
}

void CudaBackend::copy_state(int src, int dst) {
    check_sequence_slot(src, n_seq_max_, "copy_state");
    check_sequence_slot(dst, n_seq_max_, "copy_state");
    if (src == dst) return;
    cudaStream_t s = stream_.get();
    check(cudaMemcpyAsync(conv_state(dst, 0), conv_state(src, 0), conv_per_slot_ * sizeof(float),
                          cudaMemcpyDeviceToDevice, s),
          "copying a conv state");
    check(cudaMemcpyAsync(ssm_state(dst, 0), ssm_state(src, 0), ssm_per_slot_ * sizeof(float), cudaMemcpyDeviceToDevice,
                          s),
          "copying an SSM state");
}

void CudaBackend::run_layers(const Rows& rows) {
    for (int64_t layer = 0; layer < hp_.n_layer; ++layer) run_mixer(layer, rows);
}

void CudaBackend::run_mixer(int64_t layer, const Rows& rows) {
    const cuda::DeviceLayer& w = weights_.layers()[layer];
    cudaStream_t s = stream_.get();
    const int64_t n = rows.n, d_model = hp_.d_model, d_inner = hp_.d_inner, d_state = hp_.d_state;
    const int64_t dt_rank = hp_.dt_rank;
    float *h = h_.as<float>(), *xn = xn_.as<float>(), *xz = xz_.as<float>(), *xc = xc_.as<float>();
    float *x_dbl = x_dbl_.as<float>(), *y = y_.as<float>(), *out = out_.as<float>();
    const auto* inputs = decode_inputs_.as<DecodeInputs>();

    // Decode in the GEMV regime: the previous out_proj added the residual into h and left its sums of squares,
    // so in_proj normalises as it loads h (layer 0 reads the embeddings through the norm kernel).
    const bool fused = gemv_decode(rows);
    if (fused && layer > 0) {
        cuda::launch_gemv(w.ssm_in, w.ssm_in_b, h, d_model, static_cast<int>(n), xz, 2 * d_inner, s,
                          folded_norm(w.attn_norm, n));
    } else {
        cuda::launch_residual_rms_norm(h, layer == 0 || fused ? nullptr : out, w.attn_norm, xn, n, d_model,
                                       hp_.norm_eps, s);
        if (mamba2_) {
            run_mamba2_mixer(layer, rows);
            return;
        }
        cuda::project(w.ssm_in, w.ssm_in_b, xn, d_model, n, xz, 2 * d_inner, gemm_, s);
    }

    const cuda::ConvWeights conv{d_inner, hp_.d_conv, w.conv_w, w.conv_b};
    // The GEMV regime fuses the conv into x_proj and leaves partial x_proj rows for the SSM decode to sum
    // (kernels/mamba1/conv_x_proj.h); prefill and larger decode batches run the conv, then x_proj whole.
    if (rows.prefill_slot >= 0) {
        cuda::launch_conv1d_prefill(conv, xz, 2 * d_inner, n, conv_state(rows.prefill_slot, layer), xc, s);
    } else if (!fused) {
        cuda::launch_conv1d_decode(conv, xz, 2 * d_inner, static_cast<int>(n), conv_state(0, layer), conv_per_slot_,
                                   inputs->slots, xc, s);
    }
    if (fused) {
        cuda::ConvXProjParams p;
        p.n_batch = static_cast<int>(n);
        p.conv = conv;
        p.x = xz;
        p.x_stride = 2 * d_inner;
        p.windows = conv_state(0, layer);
        p.slot_stride = conv_per_slot_;
        p.slots = inputs->slots;
        p.u = xc;
        p.u_stride = d_inner;
        p.x_proj = w.ssm_x;
        p.partials = x_dbl_partials_.as<float>();
        p.partial_stride = n * x_dbl_width_;
        cuda::launch_conv_x_proj(p, s);
    } else {
        cuda::project(w.ssm_x, nullptr, xc, d_inner, n, x_dbl, x_dbl_width_, gemm_, s);
    }
    // Decode applies the dt/B/C norms inside the SSM decode kernel.
    if (hp_.dt_b_c_rms && rows.prefill_slot >= 0) {
        cuda::launch_rms_norm_segment(x_dbl, x_dbl_width_, 0, dt_rank, n, hp_.mixer_rms_eps, s);
        cuda::launch_rms_norm_segment(x_dbl, x_dbl_width_, dt_rank, d_state, n, hp_.mixer_rms_eps, s);
        cuda::launch_rms_norm_segment(x_dbl, x_dbl_width_, dt_rank + d_state, d_state, n, hp_.mixer_rms_eps, s);
    }

    if (rows.prefill_slot >= 0) {
        float* dt = dt_.as<float>();
        cuda::project(w.ssm_dt, nullptr, x_dbl, x_dbl_width_, n, dt, d_inner, gemm_, s);
        cuda::ScanParams p;
        p.n_tokens = n;
        p.d_inner = d_inner;
        p.d_state = d_state;
        p.u = xc;
        p.u_stride = d_inner;
        p.dt = dt;
        p.dt_stride = d_inner;
        p.dt_bias = w.ssm_dt_b;
        p.A = w.ssm_a;
        p.B = x_dbl + dt_rank;
        p.C = x_dbl + dt_rank + d_state;
        p.bc_stride = x_dbl_width_;
        p.D = w.ssm_d;
        p.z = xz + d_inner;
        p.z_stride = 2 * d_inner;
        p.state = ssm_state(rows.prefill_slot, layer);
        p.y = y;
        p.y_stride = d_inner;
        cuda::launch_selective_scan(p, s);
    } else {
        cuda::SsmDecodeParams p;
        p.n_batch = static_cast<int>(n);
        p.d_inner = d_inner;
        p.d_state = d_state;
        p.dt_rank = dt_rank;
        p.x_dbl = fused ? x_dbl_partials_.as<float>() : x_dbl;
        p.x_dbl_stride = x_dbl_width_;
        p.n_partials = fused ? static_cast<int>(cuda::conv_x_proj_partials(d_inner, static_cast<int>(n))) : 1;
        p.partial_stride = n * x_dbl_width_;
        p.norm_dt_b_c = hp_.dt_b_c_rms;
        p.norm_eps = hp_.mixer_rms_eps;
        p.dt_weight = w.ssm_dt;
        p.dt_bias = w.ssm_dt_b;
        p.A = w.ssm_a;
        p.D = w.ssm_d;
        p.u = xc;
        p.u_stride = d_inner;
        p.z = xz + d_inner;
        p.z_stride = 2 * d_inner;
        p.states = ssm_state(0, layer);
        p.slot_stride = ssm_per_slot_;
        p.slots = inputs->slots;
        p.y = y;
        p.y_stride = d_inner;
        cuda::launch_ssm_decode(p, s);
    }

    if (fused) {
        cuda::GemvFusion residual;
        residual.residual = true;
        residual.residual_squares = residual_squares_.as<float>();
        cuda::launch_gemv(w.ssm_out, w.ssm_out_b, y, d_inner, static_cast<int>(n), h, d_model, s, residual);
    } else {
        cuda::project(w.ssm_out, w.ssm_out_b, y, d_inner, n, out, d_model, gemm_, s);
    }
}

void CudaBackend::run_mamba2_mixer(int64_t layer, const Rows& rows) {
    const cuda::DeviceLayer& w = weights_.layers()[layer];
    const cuda::Mamba2Activations a{xz_.as<float>(), xc_.as<float>(), y_.as<float>()};
    const cuda::Mamba2SlotStates states{conv_state(0, layer), conv_per_slot_, ssm_state(0, layer), ssm_per_slot_,
                                        decode_inputs_.as<DecodeInputs>()->slots};
    if (rows.prefill_slot >= 0) {
        cuda::run_mamba2_prefill(hp_, w, xn_.as<float>(), rows.n, states, rows.prefill_slot, a, out_.as<float>(),
                                 *mamba2_, gemm_, stream_.get());
    } else {
        cuda::run_mamba2_decode(hp_, w, xn_.as<float>(), static_cast<int>(rows.n), states, a, out_.as<float>(),
                                *mamba2_, gemm_, stream_.get());
    }
}

cuda::GemvFusion CudaBackend::folded_norm(const float* weight, int64_t n) const {
    cuda::GemvFusion f;
    f.norm_weight = weight;
    f.square_partials = residual_squares_.as<float>();
    f.n_square_partials = cuda::gemv_blocks(hp_.d_model, static_cast<int>(n));
    f.eps = hp_.norm_eps;
    return f;
}

void CudaBackend::compute_logits(int64_t first, int64_t n, bool after_gemv_decode) {
    cudaStream_t s = stream_.get();
    const int64_t d_model = hp_.d_model;
    if (after_gemv_decode && hp_.n_layer > 0) {
        cuda::launch_gemv(weights_.output(), nullptr, h_.as<float>() + first * d_model, d_model, static_cast<int>(n),
                          logits_.as<float>(), hp_.n_vocab, s, folded_norm(weights_.output_norm(), n));
        return;
    }
    cuda::launch_residual_rms_norm(h_.as<float>() + first * d_model, out_.as<float>() + first * d_model,
                                   weights_.output_norm(), xn_.as<float>(), n, d_model, hp_.norm_eps, s);
    cuda::project(weights_.output(), nullptr, xn_.as<float>(), d_model, n, logits_.as<float>(), hp_.n_vocab, gemm_, s);
}

void CudaBackend::prefill(int seq, std::span<const int32_t> tokens, std::span<float> logits, bool all_logits) {
    check_prefill_arguments(hp_, n_seq_max_, seq, tokens, logits.size(), all_logits);
    const auto n_tokens = static_cast<int64_t>(tokens.size());
    cudaStream_t s = stream_.get();
    const size_t vocab_bytes = static_cast<size_t>(hp_.n_vocab) * sizeof(float);

    for (int64_t start = 0; start < n_tokens; start += kPrefillChunk) {
        const int64_t n = std::min(kPrefillChunk, n_tokens - start);
        // Pageable source: the call returns once the ids are staged, so the span need not outlive it.
        check(cudaMemcpyAsync(tokens_.get(), tokens.data() + start, n * sizeof(int32_t), cudaMemcpyHostToDevice, s),
              "uploading prompt tokens");
        cuda::launch_embedding_gather(weights_.token_embd(), tokens_.as<int32_t>(), n, h_.as<float>(), s);
        run_layers(Rows{n, seq});
        if (all_logits) {
            for (int64_t first = 0; first < n; first += kLogitsChunk) {
                const int64_t rows = std::min(kLogitsChunk, n - first);
                compute_logits(first, rows, false);
                check(cudaMemcpyAsync(logits.data() + (start + first) * hp_.n_vocab, logits_.get(), rows * vocab_bytes,
                                      cudaMemcpyDeviceToHost, s),
                      "downloading logits");
                synchronize("prefill");  // logits_ is reused by the next rows
            }
        } else if (start + n == n_tokens) {
            compute_logits(n - 1, 1, false);
            check(cudaMemcpyAsync(logits.data(), logits_.get(), vocab_bytes, cudaMemcpyDeviceToHost, s),
                  "downloading logits");
        }
    }
    synchronize("prefill");
}

void CudaBackend::issue_decode_step(int n, bool sample) {
    cudaStream_t s = stream_.get();
    auto* inputs = decode_inputs_.as<DecodeInputs>();
    check(cudaMemcpyAsync(inputs, pinned_inputs_.get(), sizeof(DecodeInputs), cudaMemcpyHostToDevice, s),
          "uploading decode inputs");
    cuda::launch_embedding_gather(weights_.token_embd(), inputs->tokens, n, h_.as<float>(), s);
    const Rows rows{n, -1};
    run_layers(rows);
    compute_logits(0, n, gemv_decode(rows));
    if (sample) {
        cuda::launch_sample_tokens(logits_.as<float>(), hp_.n_vocab, n, &inputs->sampling, rng_counters_.as<uint64_t>(),
                                   inputs->slots, sampled_tokens_.as<int32_t>(), s);
        check(cudaMemcpyAsync(pinned_tokens_.get(), sampled_tokens_.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost,
                              s),
              "downloading sampled tokens");
    } else {
        check(cudaMemcpyAsync(pinned_logits_.get(), logits_.get(), n * hp_.n_vocab * sizeof(float),
                              cudaMemcpyDeviceToHost, s),
              "downloading logits");
    }
}

void CudaBackend::run_decode_step(std::span<const int> seqs, std::span<const int32_t> tokens,
                                  const cuda::SamplingConfig& sampling, bool sample) {
    const int n = static_cast<int>(seqs.size());
    auto* staged = pinned_inputs_.as<DecodeInputs>();
    for (int i = 0; i < n; ++i) {
        staged->tokens[i] = tokens[i];
        staged->slots[i] = seqs[i];
    }
    staged->sampling = sampling;
    auto& graph = decode_graphs_[{n, sample}];
    if (!graph) graph = std::make_unique<cuda::CudaGraph>(stream_.get(), [&] { issue_decode_step(n, sample); });
    graph->launch(stream_.get());
    synchronize("decode");
}

void CudaBackend::decode(std::span<const int> seqs, std::span<const int32_t> tokens, std::span<float> logits) {
    check_batch_arguments(hp_, n_seq_max_, seqs, tokens, "decode");
    if (seqs.empty()) return;
    const size_t n_vocab = static_cast<size_t>(hp_.n_vocab);
    check_logits_room(logits.size(), seqs.size() * n_vocab, "decode");
    for (size_t first = 0; first < seqs.size(); first += kMaxDecodeBatch) {
        const size_t n = std::min<size_t>(kMaxDecodeBatch, seqs.size() - first);
        run_decode_step(seqs.subspan(first, n), tokens.subspan(first, n), cuda::SamplingConfig{}, false);
        std::memcpy(logits.data() + first * n_vocab, pinned_logits_.get(), n * n_vocab * sizeof(float));
    }
}

bool CudaBackend::decode_sample(std::span<const int> seqs, std::span<const int32_t> tokens,
                                const DeviceSampling& sampling, std::span<int32_t> next_tokens) {
    check_batch_arguments(hp_, n_seq_max_, seqs, tokens, "decode_sample");
    if (next_tokens.size() < seqs.size()) {
        fail("decode_sample: room for ", next_tokens.size(), " tokens, needs ", seqs.size());
    }
    if (!(sampling.temperature >= 0.0f) || sampling.top_k < 0 || !(sampling.top_p > 0.0f && sampling.top_p <= 1.0f)) {
        fail("decode_sample: invalid sampling settings (temperature ", sampling.temperature, ", top_k ", sampling.top_k,
             ", top_p ", sampling.top_p, ")");
    }
    const cuda::SamplingConfig config{sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed};
    for (size_t first = 0; first < seqs.size(); first += kMaxDecodeBatch) {
        const size_t n = std::min<size_t>(kMaxDecodeBatch, seqs.size() - first);
        run_decode_step(seqs.subspan(first, n), tokens.subspan(first, n), config, true);
        std::memcpy(next_tokens.data() + first, pinned_tokens_.get(), n * sizeof(int32_t));
        cuda::check_sampled_tokens(next_tokens.subspan(first, n), seqs.subspan(first, n));
    }
    return true;
}

uint64_t CudaBackend::device_memory_bytes() const {
    uint64_t total = weights_.bytes() + gemm_.scratch_bytes() + (mamba2_ ? mamba2_->bytes() : 0);
    for (const cuda::DeviceBuffer* b : {&conv_states_, &ssm_states_, &rng_counters_, &tokens_, &h_, &xn_, &xz_, &xc_,
                                        &x_dbl_, &x_dbl_partials_, &residual_squares_, &dt_, &y_, &out_, &logits_,
                                        &decode_inputs_, &sampled_tokens_}) {
        total += b->bytes();
    }
    return total;
}

}  // namespace

int cuda_device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // no driver or no device: not an error for a question
        return 0;
    }
    return count;
}

bool cuda_supports(const Model& model) {
    const ModelHparams& hp = model.hparams();
    if (hp.arch == Architecture::Mamba2 && !cuda::mamba2_shape_supported(hp)) return false;
    const auto device_type = [](const TensorView& t) {
        return t.type == GgmlType::F32 || t.type == GgmlType::F16 || t.type == GgmlType::BF16 ||
               t.type == GgmlType::Q8_0;
    };
    const ModelWeights& w = model.weights();
    if (!device_type(w.token_embd) || !device_type(w.output)) return false;
    for (const LayerWeights& layer : w.layers) {
        for (const TensorView* m : layer_matrices(layer)) {
            if (!device_type(*m)) return false;
        }
    }
    return true;
}

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options) {
    const ModelHparams& hp = model.hparams();
    if (hp.arch == Architecture::Mamba2 && !cuda::mamba2_shape_supported(hp)) {
        fail("the CUDA backend's Mamba-2 kernels take head_dim and d_state up to ", cuda::kMaxSsdHeadDim, " and ",
             cuda::kMaxSsdState, " and conv widths up to ", cuda::kMaxConvWidth, "; this model has head_dim ",
             hp.head_dim, ", d_state ", hp.d_state, ", conv width ", hp.d_conv, ": use --device cpu");
    }
    return std::make_unique<CudaBackend>(model, options);
}

}  // namespace dendro
