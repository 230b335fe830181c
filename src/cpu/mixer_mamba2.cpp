// The Mamba-2 mixer on the CPU. Five steps a layer, separated by the pool's barriers: in_proj and the conv
// (each thread its share of in_proj's rows, and so of the conv's channels); the C.B products of each
// multi-token chunk; the scan (each thread its share of the heads); the gated norm (rows); out_proj.
#include "cpu/mixer_mamba2.h"

#include <algorithm>
#include <cmath>

#include "cpu/ops.h"
#include "cpu/simd.h"
#include "cpu/weight_vectors.h"

namespace dendro::cpu {

namespace {

constexpr size_t kGramFloats = static_cast<size_t>(kSsdChunk * kSsdChunk);

}  // namespace

void Mamba2Scratch::reserve(const ModelHparams& hp, int64_t n_rows, int64_t n_chunks, int threads) {
    const auto rows = static_cast<size_t>(n_rows);
    if (zxbcdt.size() < rows * hp.in_proj_rows()) {
        zxbcdt.resize(rows * hp.in_proj_rows());
        xbc.resize(rows * hp.conv_channels());
        y.resize(rows * hp.d_inner);
        out.resize(rows * hp.d_model);
    }
    const size_t gram_floats = static_cast<size_t>(n_chunks * hp.n_group) * kGramFloats;
    if (gram.size() < gram_floats) gram.resize(gram_floats);
    const size_t packed_floats = static_cast<size_t>(n_chunks * hp.n_group * 2 * kSsdChunk * hp.d_state);
    if (packed.size() < packed_floats) packed.resize(packed_floats);
    if (n_threads < threads) {
        per_thread.resize(static_cast<size_t>(threads) * per_thread_floats());
        n_threads = threads;
    }
}

uint64_t Mamba2Scratch::bytes() const { return float_bytes({&zxbcdt, &xbc, &y, &out, &gram, &packed, &per_thread}); }

int64_t count_multi_token_chunks(std::span<const SeqSpan> spans) {
    int64_t n = 0;
    for (const SeqSpan& span : spans) {
        for (int64_t start = 0; start < span.n_tokens; start += kSsdChunk) n += std::min(kSsdChunk, span.n_tokens - start) > 1;
    }
    return n;
}

Mamba2CpuLayer::Mamba2CpuLayer(const ModelHparams& hp, const Mamba2Mixer& w)
    : hp_(hp),
      w_(w),
      in_bias_(to_f32(w.ssm_in_b)),
      conv_taps_by_slot_(to_f32_transposed(w.conv1d_w)),
      conv_bias_(to_f32(w.conv1d_b)),
      dt_bias_(to_f32(w.ssm_dt_b)),
      a_(to_f32(w.ssm_a)),
      d_(to_f32(w.ssm_d)),
      norm_(to_f32(w.ssm_norm)),
      out_bias_(to_f32(w.ssm_out_b)) {}

uint64_t Mamba2CpuLayer::vector_bytes() const {
    return float_bytes({&in_bias_, &conv_taps_by_slot_, &conv_bias_, &dt_bias_, &a_, &d_, &norm_, &out_bias_});
}

float Mamba2CpuLayer::time_step(const Mamba2Scratch& s, int64_t row, int64_t head) const {
    const float raw = s.zxbcdt[row * hp_.in_proj_rows() + hp_.d_inner + hp_.conv_channels() + head];
    return std::clamp(softplus(raw + dt_bias_[head]), hp_.time_step_min, hp_.time_step_max);
}

void Mamba2CpuLayer::recurrent_step(Mamba2Scratch& s, int64_t row, int64_t head, float* h) const {
    const int64_t d_state = hp_.d_state, head_dim = hp_.head_dim, n_conv = hp_.conv_channels();
    const int64_t group = head / (hp_.n_head / hp_.n_group);
    const float dt = time_step(s, row, head);
    const float decay = std::exp(dt * a_[head]);
    const float* xbc = s.xbc.data() + row * n_conv;
    const float* x = xbc + head * head_dim;
    const float* b = xbc + hp_.d_inner + group * d_state;
    const float* c = xbc + hp_.d_inner + hp_.n_group * d_state + group * d_state;
    float* y = s.y.data() + row * hp_.d_inner + head * head_dim;
    for (int64_t p = 0; p < head_dim; ++p) {
        y[p] = ssm_row_step(h + p * d_state, decay, x[p] * dt, b, c, d_state) + d_[head] * x[p];
    }
}

void Mamba2CpuLayer::ssd_chunk(Mamba2Scratch& s, const float* gram, const float* b_rows, const float* c_rows, int64_t r0,
                               int64_t n, int64_t head, float* h, float* work) const {
    const int64_t d_state = hp_.d_state, head_dim = hp_.head_dim, n_conv = hp_.conv_channels();
    float* dt = work;                  // dt_t
    float* decay = work + kSsdChunk;   // cum_t = sum_{i<=t} dt_i A: h decays by exp(cum_t - cum_s) from s to t
    float* weight = work + 2 * kSsdChunk;
    float* coef = work + 3 * kSsdChunk;
    float cum = 0.0f;
    for (int64_t t = 0; t < n; ++t) {
        dt[t] = time_step(s, r0 + t, head);
        cum += dt[t] * a_[head];
        decay[t] = cum;
    }
    const auto x_of = [&](int64_t t) { return s.xbc.data() + (r0 + t) * n_conv + head * head_dim; };
    const auto b_of = [&](int64_t t) { return b_rows + t * d_state; };
    const auto c_of = [&](int64_t t) { return c_rows + t * d_state; };
    const auto y_of = [&](int64_t t) { return s.y.data() + (r0 + t) * hp_.d_inner + head * head_dim; };

    // From the start state: y_t = exp(cum_t) C_t . h0[p], as C (n x d_state) times h0^T, one state row
    // against every token's C so that the row is read once.
    constexpr int64_t kTokensAtOnce = 8;  // independent accumulators, so the FMAs do not wait on each other
    const int64_t whole = d_state - d_state % kLanes;
    for (int64_t p = 0; p < head_dim; ++p) {
        const float* hp = h + p * d_state;
        int64_t t = 0;
        for (; t + kTokensAtOnce <= n && whole == d_state; t += kTokensAtOnce) {
            F32x8 acc[kTokensAtOnce];
            for (F32x8& a : acc) a = zero8();
            for (int64_t k = 0; k < d_state; k += kLanes) {
                const F32x8 hv = load8(hp + k);
                for (int64_t i = 0; i < kTokensAtOnce; ++i) acc[i] = fma8(load8(c_of(t + i) + k), hv, acc[i]);
            }
            for (int64_t i = 0; i < kTokensAtOnce; ++i) y_of(t + i)[p] = hsum8(acc[i]);
        }
        for (; t < n; ++t) y_of(t)[p] = dot_f32(c_of(t), hp, d_state);
    }
    // Within the chunk: y_t += sum_{s<=t} (C_t.B_s) exp(cum_t - cum_s) dt_s x_s, and the skip D x_t. The
    // weights take exp8 eight at a time, and 8 slices of 8 channels of y_t stay in registers across the s
    // (8 independent FMA chains: one alone waits out the FMA latency at every s).
    constexpr int64_t kSlicesAtOnce = 8;
    const F32x8 skip = broadcast8(d_[head]);
    for (int64_t t = 0; t < n; ++t) {
        float* y = y_of(t);
        const float from_start_scalar = std::exp(decay[t]);
        const F32x8 from_start = broadcast8(from_start_scalar), cum_t = broadcast8(decay[t]);
        const float* gram_row = gram + t * kSsdChunk;
        int64_t j = 0;
        for (; j + kLanes <= t + 1; j += kLanes) {
            const F32x8 decayed = exp8(sub8(cum_t, load8(decay + j)));
            store8(weight + j, mul8(mul8(load8(gram_row + j), decayed), load8(dt + j)));
        }
        if (j <= t) {
            const int64_t lanes = t + 1 - j;
            const F32x8 decayed = exp8(sub8(cum_t, load8_partial(decay + j, lanes)));
            const F32x8 w = mul8(mul8(load8_partial(gram_row + j, lanes), decayed), load8_partial(dt + j, lanes));
            store8_partial(weight + j, w, lanes);
        }
        const float* x_t = x_of(t);
        int64_t p = 0;
        for (; p + kSlicesAtOnce * kLanes <= head_dim; p += kSlicesAtOnce * kLanes) {
            F32x8 acc[kSlicesAtOnce];
            for (int64_t k = 0; k < kSlicesAtOnce; ++k) {
                acc[k] = fma8(from_start, load8(y + p + k * kLanes), mul8(skip, load8(x_t + p + k * kLanes)));
            }
            for (int64_t i = 0; i <= t; ++i) {
                const F32x8 w = broadcast8(weight[i]);
                const float* x = x_of(i) + p;
                for (int64_t k = 0; k < kSlicesAtOnce; ++k) acc[k] = fma8(w, load8(x + k * kLanes), acc[k]);
            }
            for (int64_t k = 0; k < kSlicesAtOnce; ++k) store8(y + p + k * kLanes, acc[k]);
        }
        for (; p + kLanes <= head_dim; p += kLanes) {
            F32x8 acc = fma8(from_start, load8(y + p), mul8(skip, load8(x_t + p)));
            for (int64_t i = 0; i <= t; ++i) acc = fma8(broadcast8(weight[i]), load8(x_of(i) + p), acc);
            store8(y + p, acc);
        }
        for (; p < head_dim; ++p) {
            float acc = fma1(from_start_scalar, y[p], d_[head] * x_t[p]);
            for (int64_t i = 0; i <= t; ++i) acc = fma1(weight[i], x_of(i)[p], acc);
            y[p] = acc;
        }
    }

    // End state: h = exp(cum_last) h0 + sum_s exp(cum_last - cum_s) dt_s x_s B_s^T, as X^T diag(w) B: each
    // state row held in registers across the chunk's tokens.
    const float last = decay[n - 1];
    const F32x8 through = broadcast8(std::exp(last));
    for (int64_t j = 0; j < n; ++j) weight[j] = std::exp(last - decay[j]) * dt[j];
    constexpr int64_t kBlocksAtOnce = 8;  // 64 state elements held in registers across the chunk's tokens
    for (int64_t p = 0; p < head_dim; ++p) {
        for (int64_t j = 0; j < n; ++j) coef[j] = weight[j] * x_of(j)[p];
        float* hp = h + p * d_state;
        int64_t k = 0;
        for (; k + kBlocksAtOnce * kLanes <= whole; k += kBlocksAtOnce * kLanes) {
            F32x8 a[kBlocksAtOnce];
            for (int64_t i = 0; i < kBlocksAtOnce; ++i) a[i] = mul8(through, load8(hp + k + i * kLanes));
            for (int64_t j = 0; j < n; ++j) {
                const F32x8 c = broadcast8(coef[j]);
                const float* b = b_of(j) + k;
                for (int64_t i = 0; i < kBlocksAtOnce; ++i) a[i] = fma8(c, load8(b + i * kLanes), a[i]);
            }
            for (int64_t i = 0; i < kBlocksAtOnce; ++i) store8(hp + k + i * kLanes, a[i]);
        }
        for (; k < d_state; k += kLanes) {
            const int64_t lanes = std::min<int64_t>(kLanes, d_state - k);
            F32x8 a = mul8(through, load8_partial(hp + k, lanes));
            for (int64_t j = 0; j < n; ++j) a = fma8(broadcast8(coef[j]), load8_partial(b_of(j) + k, lanes), a);
            store8_partial(hp + k, a, lanes);
        }
    }
}

void Mamba2CpuLayer::forward(const MixerBatch& batch, Mamba2Scratch& s, const Team& team) const {
    const int64_t d_model = hp_.d_model, d_inner = hp_.d_inner, d_state = hp_.d_state, d_conv = hp_.d_conv;
    const int64_t n_conv = hp_.conv_channels(), n_in = hp_.in_proj_rows(), n_group = hp_.n_group;
    const int64_t n_rows = batch.n_rows, il = batch.layer;
    const int thread = team.thread, n_threads = team.n_threads;

    // in_proj, then the conv over the xBC channels among this thread's rows.
    const Range rows = thread_share(n_in, thread, n_threads);
    matmul_rows(w_.ssm_in, {batch.normed, d_model}, n_rows, {s.zxbcdt.data(), n_in}, rows.begin, rows.end);
    if (!in_bias_.empty()) {
        for (int64_t r = 0; r < n_rows; ++r) {
            for (int64_t i = rows.begin; i < rows.end; ++i) s.zxbcdt[r * n_in + i] += in_bias_[i];
        }
    }
    const int64_t conv_begin = std::max(rows.begin, d_inner) - d_inner;
    const int64_t conv_end = std::min(rows.end, d_inner + n_conv) - d_inner;
    const ConvTaps taps{conv_taps_by_slot_.data(), n_conv, d_conv, conv_bias_.empty() ? nullptr : conv_bias_.data()};
    for (const SeqSpan& span : batch.spans) {
        conv_silu_channels(taps, conv_begin, conv_end, {batch.slots[span.slot].conv_layer(il), n_conv},
                           {s.zxbcdt.data() + span.first_row * n_in + d_inner, n_in},
                           {s.xbc.data() + span.first_row * n_conv, n_conv}, span.n_tokens);
    }
    team.pool.barrier();

    // C_t . B_s (s <= t) of every multi-token chunk and group, and its B and C rows packed contiguous (the
    // scan reads them once per head): rows dealt out round-robin.
    const int64_t n_chunks = count_multi_token_chunks(batch.spans);
    const size_t packed_per_group = static_cast<size_t>(2 * kSsdChunk * d_state);
    if (n_chunks > 0) {
        int64_t chunk = 0;
        int64_t item = 0;  // (chunk, group, t) in order, for the round-robin
        for (const SeqSpan& span : batch.spans) {
            for (int64_t start = 0; start < span.n_tokens; start += kSsdChunk) {
                const int64_t n = std::min(kSsdChunk, span.n_tokens - start);
                if (n == 1) continue;
                const int64_t r0 = span.first_row + start;
                for (int64_t g = 0; g < n_group; ++g) {
                    const size_t index = static_cast<size_t>(chunk * n_group + g);
                    float* gram = s.gram.data() + index * kGramFloats;
                    float* packed_b = s.packed.data() + index * packed_per_group;
                    float* packed_c = packed_b + kSsdChunk * d_state;
                    for (int64_t t = 0; t < n; ++t, ++item) {
                        if (item % n_threads != thread) continue;
                        const float* b_t = s.xbc.data() + (r0 + t) * n_conv + d_inner + g * d_state;
                        const float* c = s.xbc.data() + (r0 + t) * n_conv + d_inner + n_group * d_state + g * d_state;
                        std::copy(b_t, b_t + d_state, packed_b + t * d_state);
                        std::copy(c, c + d_state, packed_c + t * d_state);
                        for (int64_t j = 0; j <= t; ++j) {
                            const float* b = s.xbc.data() + (r0 + j) * n_conv + d_inner + g * d_state;
                            gram[t * kSsdChunk + j] = dot_f32(c, b, d_state);
                        }
                    }
                }
                ++chunk;
            }
        }
        team.pool.barrier();
    }

    // The scan, head by head, chunk after chunk.
    const Range heads = thread_share(hp_.n_head, thread, n_threads, 1);
    float* work = s.thread_buffer(thread);
    for (int64_t head = heads.begin; head < heads.end; ++head) {
        const int64_t group = head / (hp_.n_head / n_group);
        int64_t chunk = 0;
        for (const SeqSpan& span : batch.spans) {
            float* h = batch.slots[span.slot].ssm_layer(il) + head * hp_.head_dim * d_state;
            for (int64_t start = 0; start < span.n_tokens; start += kSsdChunk) {
                const int64_t n = std::min(kSsdChunk, span.n_tokens - start);
                if (n == 1) {
                    recurrent_step(s, span.first_row + start, head, h);
                    continue;
                }
                const size_t index = static_cast<size_t>(chunk * n_group + group);
                const float* packed_b = s.packed.data() + index * packed_per_group;
                ssd_chunk(s, s.gram.data() + index * kGramFloats, packed_b, packed_b + kSsdChunk * d_state,
                          span.first_row + start, n, head, h, work);
                ++chunk;
            }
        }
    }
    team.pool.barrier();

    // Gated RMSNorm per group of d_inner / n_group channels: y * silu(z), normalised, times the weight.
    const int64_t group_size = d_inner / n_group;
    for (int64_t r = thread; r < n_rows; r += n_threads) {
        float* y = s.y.data() + r * d_inner;
        const float* z = s.zxbcdt.data() + r * n_in;
        int64_t i = 0;
        for (; i + kLanes <= d_inner; i += kLanes) store8(y + i, mul8(load8(y + i), silu8(load8(z + i))));
        for (; i < d_inner; ++i) y[i] *= silu(z[i]);
        for (int64_t g = 0; g < n_group; ++g) {
            rms_norm(y + g * group_size, norm_.data() + g * group_size, group_size, hp_.norm_eps, y + g * group_size);
        }
    }
    team.pool.barrier();

    add_out_proj(w_.ssm_out, out_bias_, {s.y.data(), d_inner}, s.out.data(), batch, team);
}

}  // namespace dendro::cpu
