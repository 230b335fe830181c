// The Mamba-2 mixer on the CPU. Five steps a layer, separated by the pool's barriers: in_proj and the conv
// (in_proj's rows shared out as the threads become free, matmul_team_rows, each thread the conv of the
// channels among its rows); the C.B products of each multi-token chunk; the scan (each thread its share of
// the heads); the gated norm (rows); out_proj (shared out as in_proj).
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
    const size_t thread_floats = std::max(ChunkWork::floats(hp), static_cast<size_t>(kPrivateNormRows * hp.d_inner));
    if (n_threads < threads || per_thread_floats < thread_floats) {
        per_thread_floats = thread_floats;
        per_thread.resize(static_cast<size_t>(threads) * per_thread_floats);
        n_threads = threads;
    }
}

uint64_t Mamba2Scratch::bytes() const { return float_bytes({&zxbcdt, &xbc, &y, &out, &gram, &packed, &per_thread}); }

size_t ChunkWork::floats(const ModelHparams& hp) {
    const auto chunk = static_cast<size_t>(kSsdChunk), d_state = static_cast<size_t>(hp.d_state);
    const auto head_dim = static_cast<size_t>(hp.head_dim);
    return 2 * chunk + chunk * chunk + d_state * head_dim + 2 * head_dim * chunk;
}

ChunkWork::ChunkWork(const ModelHparams& hp, float* buffer)
    : dt(buffer),
      decay(dt + kSsdChunk),
      weights(decay + kSsdChunk),
      state_by_channel(weights + kSsdChunk * kSsdChunk),
      scaled_x(state_by_channel + hp.d_state * hp.head_dim),
      coef_by_channel(scaled_x + kSsdChunk * hp.head_dim) {}

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
    // A decode step finds the state in DRAM (the weights streamed since the last step evict it), read and
    // written at one core's rate: asking for the rows kPrefetchAheadBytes on (running into the next head's)
    // took an Intel Xeon VM's m2 130m decode 1.04x faster at f16, 1.19x at q4_k_m (2 threads; 16 KB was less).
    const auto row_bytes = static_cast<uintptr_t>(d_state) * sizeof(float);
    for (int64_t p = 0; p < head_dim; ++p) {
        prefetch_lines<kPrefetchToL2>(reinterpret_cast<uintptr_t>(h + p * d_state) + kPrefetchAheadBytes, row_bytes);
        y[p] = ssm_row_step(h + p * d_state, decay, x[p] * dt, b, c, d_state) + d_[head] * x[p];
    }
}

namespace {

// The SSD chunk's three products are small matrix products (for mamba2-130m 64 x 64 x 128 per head) whose
// operands all have a contiguous inner dimension. They share one register tile: T output rows times
// kSliceVectors vectors of 8 outputs, acc[i][v] += a[i][j] * b_j[v] for j in order, one broadcast of a per
// (i, j) and one load of b per (j, v), T x kSliceVectors independent FMA chains. (Each output a dot with
// its own horizontal sum, as before, took a load per FMA and 20 % extra for the sums.) Every output's
// products are added in the order of j, so it does not depend on the tile it falls in.
// 6 x 4 accumulators with AVX-512's 32 registers, 6 x 2 with AVX2's 16 (measured on one Zen 4 core, in
// L1: 58 and 57 GMAC/s, the FMA peak; 4 x 4 gave 44, 3 x 8 40).
constexpr int kTileRows = 6;
constexpr int kSliceVectors = kVectorRegisters >= 32 ? 4 : 2;

// `lanes` < 8 only in a head's last, partial vector (V = 1).
template <int T, int V>
struct ChunkTile {
    F32x8 acc[T][V];
    int64_t lanes = kLanes;

    F32x8 load(const float* p) const { return V > 1 || lanes == kLanes ? load8(p) : load8_partial(p, lanes); }
    void store(float* p, F32x8 v) const {
        if (V > 1 || lanes == kLanes) {
            store8(p, v);
        } else {
            store8_partial(p, v, lanes);
        }
    }
    [[gnu::always_inline]] void zero() {
#pragma GCC unroll 8
        for (int i = 0; i < T; ++i) {
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) acc[i][v] = zero8();
        }
    }
    // acc[i][v] = factor * the 8 values at p + i * stride + 8 v.
    [[gnu::always_inline]] void set_rows(F32x8 factor, const float* p, int64_t stride) {
#pragma GCC unroll 8
        for (int i = 0; i < T; ++i) {
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) acc[i][v] = mul8(factor, load(p + i * stride + v * kLanes));
        }
    }
    [[gnu::always_inline]] void store_rows(float* p, int64_t stride) const {
#pragma GCC unroll 8
        for (int i = 0; i < T; ++i) {
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) store(p + i * stride + v * kLanes, acc[i][v]);
        }
    }
    // acc[i][v] += sum_{j < depth} a[i * a_stride + j] * b[j * b_stride + 8 v ..], j in order.
    [[gnu::always_inline]] void add_products(const float* a, int64_t a_stride, const float* b, int64_t b_stride, int64_t depth) {
        for (int64_t j = 0; j < depth; ++j) {
            F32x8 bj[V];
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) bj[v] = load(b + j * b_stride + v * kLanes);
#pragma GCC unroll 8
            for (int i = 0; i < T; ++i) {
                const F32x8 ai = broadcast8(a[i * a_stride + j]);
#pragma GCC unroll 8
                for (int v = 0; v < V; ++v) acc[i][v] = fma8(ai, bj[v], acc[i][v]);
            }
        }
    }
};

// dst[c * dst_stride + r] = src[r * src_stride + c] for a rows x columns src: 8 x 8 blocks in registers,
// the edges element by element.
void transpose(const float* src, int64_t src_stride, int64_t rows, int64_t columns, float* dst, int64_t dst_stride) {
    const int64_t whole_rows = rows - rows % kLanes, whole_columns = columns - columns % kLanes;
    for (int64_t r = 0; r < whole_rows; r += kLanes) {
        for (int64_t c = 0; c < whole_columns; c += kLanes) {
            F32x8 block[kLanes];
            for (int64_t i = 0; i < kLanes; ++i) block[i] = load8(src + (r + i) * src_stride + c);
            transpose8x8(block);
            for (int64_t i = 0; i < kLanes; ++i) store8(dst + (c + i) * dst_stride + r, block[i]);
        }
    }
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = r < whole_rows ? whole_columns : 0; c < columns; ++c) dst[c * dst_stride + r] = src[r * src_stride + c];
    }
}

// Rows [r, rows) of a slice of columns from c: tiles of T rows, then the rest with fewer.
template <int T, int V, typename Run>
void tile_rows(int64_t r, int64_t rows, int64_t c, int64_t lanes, const Run& run) {
    for (; r + T <= rows; r += T) run.template operator()<T, V>(r, c, lanes);
    if constexpr (T > 1) tile_rows<T - 1, V>(r, rows, c, lanes, run);
}

// A product over (rows, columns): slices of kSliceVectors vectors of columns, then the last vectors one by
// one (the last maybe partial).
template <typename Run>
void tiled(int64_t rows, int64_t columns, const Run& run) {
    int64_t c = 0;
    for (; c + kSliceVectors * kLanes <= columns; c += kSliceVectors * kLanes) tile_rows<kTileRows, kSliceVectors>(0, rows, c, kLanes, run);
    for (; c < columns; c += kLanes) tile_rows<kTileRows, 1>(0, rows, c, std::min<int64_t>(kLanes, columns - c), run);
}

}  // namespace

void Mamba2CpuLayer::ssd_chunk(Mamba2Scratch& s, const float* gram, const float* b_rows, const float* c_rows, int64_t r0,
                               int64_t n, int64_t head, float* h, const ChunkWork& w) const {
    const int64_t d_state = hp_.d_state, head_dim = hp_.head_dim, n_conv = hp_.conv_channels();
    float cum = 0.0f;
    for (int64_t t = 0; t < n; ++t) {
        w.dt[t] = time_step(s, r0 + t, head);
        cum += w.dt[t] * a_[head];
        w.decay[t] = cum;
    }
    const float* x0 = s.xbc.data() + r0 * n_conv + head * head_dim;  // x_t = x0 + t * n_conv
    float* y0 = s.y.data() + r0 * hp_.d_inner + head * head_dim;     // y_t = y0 + t * d_inner

    // The token pairs' weights W[t][s] = (C_t.B_s) exp(cum_t - cum_s) dt_s for s <= t, zero above the
    // diagonal (a tile's rows all run to its last row's diagonal), exp8 eight at a time.
    for (int64_t t = 0; t < n; ++t) {
        float* weight_row = w.weights + t * kSsdChunk;
        const F32x8 cum_t = broadcast8(w.decay[t]);
        // Whole vectors past the diagonal too (the buffers hold kSsdChunk), then zeros from t + 1 on.
        for (int64_t j = 0; j <= t; j += kLanes) {
            const F32x8 decayed = exp8(sub8(cum_t, load8(w.decay + j)));
            store8(weight_row + j, mul8(mul8(load8(gram + t * kSsdChunk + j), decayed), load8(w.dt + j)));
        }
        std::fill(weight_row + t + 1, weight_row + n, 0.0f);
    }
    // h0 transposed (d_state x head_dim), so that C_t . h0[p] runs over channels p in the lanes.
    transpose(h, d_state, head_dim, d_state, w.state_by_channel, head_dim);

    // Outputs, a tile of T tokens by V vectors of channels at a time:
    // y_t = exp(cum_t) (C_t . h0) + D x_t + sum_{s<=t} W[t][s] x_s.
    const float skip = d_[head];
    const auto outputs = [&]<int T, int V>(int64_t t0, int64_t p, int64_t lanes) {
        ChunkTile<T, V> tile;
        tile.lanes = lanes;
        tile.zero();
        tile.add_products(c_rows + t0 * d_state, d_state, w.state_by_channel + p, head_dim, d_state);
#pragma GCC unroll 8
        for (int i = 0; i < T; ++i) {
            const F32x8 from_start = broadcast8(std::exp(w.decay[t0 + i]));
            const float* x_t = x0 + (t0 + i) * n_conv + p;
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) {
                tile.acc[i][v] = fma8(from_start, tile.acc[i][v], mul8(broadcast8(skip), tile.load(x_t + v * kLanes)));
            }
        }
        tile.add_products(w.weights + t0 * kSsdChunk, kSsdChunk, x0 + p, n_conv, t0 + T);
        tile.store_rows(y0 + t0 * hp_.d_inner + p, hp_.d_inner);
    };
    // End state: h[p] = exp(cum_last) h0[p] + sum_s (exp(cum_last - cum_s) dt_s x_s[p]) B_s, a tile of T
    // channels by V vectors of states at a time; the coefficients transposed to a row per channel.
    const float last = w.decay[n - 1];
    for (int64_t j = 0; j < n; ++j) {
        const float weight = std::exp(last - w.decay[j]) * w.dt[j];
        for (int64_t p = 0; p < head_dim; ++p) w.scaled_x[j * head_dim + p] = weight * x0[j * n_conv + p];
    }
    transpose(w.scaled_x, head_dim, n, head_dim, w.coef_by_channel, kSsdChunk);
    const F32x8 through = broadcast8(std::exp(last));
    const auto end_state = [&]<int T, int V>(int64_t p0, int64_t k, int64_t lanes) {
        ChunkTile<T, V> tile;
        tile.lanes = lanes;
        tile.set_rows(through, h + p0 * d_state + k, d_state);
        tile.add_products(w.coef_by_channel + p0 * kSsdChunk, kSsdChunk, b_rows + k, d_state, n);
        tile.store_rows(h + p0 * d_state + k, d_state);
    };
    tiled(n, head_dim, outputs);
    tiled(head_dim, d_state, end_state);
}

void Mamba2CpuLayer::forward(const MixerBatch& batch, Mamba2Scratch& s, const Team& team) const {
    const int64_t d_model = hp_.d_model, d_inner = hp_.d_inner, d_state = hp_.d_state, d_conv = hp_.d_conv;
    const int64_t n_conv = hp_.conv_channels(), n_in = hp_.in_proj_rows(), n_group = hp_.n_group;
    const int64_t n_rows = batch.n_rows, il = batch.layer;
    const int thread = team.thread, n_threads = team.n_threads;

    // in_proj's rows shared out among the threads, and the conv of the xBC channels among each thread's rows.
    const ConvTaps taps{conv_taps_by_slot_.data(), n_conv, d_conv, conv_bias_.empty() ? nullptr : conv_bias_.data()};
    matmul_team_rows(w_.ssm_in, {batch.normed, d_model}, n_rows, {s.zxbcdt.data(), n_in}, team, [&](Range rows) {
        if (!in_bias_.empty()) {
            for (int64_t r = 0; r < n_rows; ++r) {
                for (int64_t i = rows.begin; i < rows.end; ++i) s.zxbcdt[r * n_in + i] += in_bias_[i];
            }
        }
        const int64_t conv_begin = std::max(rows.begin, d_inner) - d_inner;
        const int64_t conv_end = std::min(rows.end, d_inner + n_conv) - d_inner;
        if (conv_begin >= conv_end) return;
        for (const SeqSpan& span : batch.spans) {
            conv_silu_channels(taps, conv_begin, conv_end, {batch.slots[span.slot].conv_layer(il), n_conv},
                               {s.zxbcdt.data() + span.first_row * n_in + d_inner, n_in},
                               {s.xbc.data() + span.first_row * n_conv, n_conv}, span.n_tokens);
        }
    });
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
    const ChunkWork work(hp_, s.thread_buffer(thread));
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

    // Gated RMSNorm per group of d_inner / n_group channels: y * silu(z), normalised, times the weight; a
    // small batch by every thread into its own buffer (free once its scan is done), a larger one in place.
    const int64_t group_size = d_inner / n_group;
    const auto gated_norm = [&](int64_t r, float* out) {
        const float* y = s.y.data() + r * d_inner;
        const float* z = s.zxbcdt.data() + r * n_in;
        int64_t i = 0;
        for (; i + kLanes <= d_inner; i += kLanes) store8(out + i, mul8(load8(y + i), silu8(load8(z + i))));
        for (; i < d_inner; ++i) out[i] = y[i] * silu(z[i]);
        for (int64_t g = 0; g < n_group; ++g) {
            rms_norm(out + g * group_size, norm_.data() + g * group_size, group_size, hp_.norm_eps, out + g * group_size);
        }
    };
    const float* normed_y = s.y.data();
    if (n_rows <= kPrivateNormRows) {
        float* own = s.thread_buffer(thread);
        for (int64_t r = 0; r < n_rows; ++r) gated_norm(r, own + r * d_inner);
        normed_y = own;
    } else {
        for (int64_t r = thread; r < n_rows; r += n_threads) gated_norm(r, s.y.data() + r * d_inner);
        team.pool.barrier();
    }

    add_out_proj(w_.ssm_out, out_bias_, {normed_y, d_inner}, s.out.data(), batch, team);
}

}  // namespace dendro::cpu
