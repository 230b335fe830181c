// The Mamba-1 mixer on the CPU: in_proj -> causal conv + SiLU -> x_proj -> (Falcon: dt/B/C norms) -> dt_proj
// -> selective scan with the gate -> out_proj, each thread taking fixed shares of channels and rows.
#include "cpu/mixer_mamba1.h"

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/weight_vectors.h"

namespace dendro::cpu {

void Mamba1Scratch::reserve(const ModelHparams& hp, int64_t n_rows) {
    const auto rows = static_cast<size_t>(n_rows);
    xz.resize(rows * 2 * hp.d_inner);
    xc.resize(rows * hp.d_inner);
    xdbc.resize(rows * (hp.dt_rank + 2 * hp.d_state));
    dt.resize(rows * hp.d_inner);
    y.resize(rows * hp.d_inner);
    out.resize(rows * hp.d_model);
}

uint64_t Mamba1Scratch::bytes() const { return float_bytes({&xz, &xc, &xdbc, &dt, &y, &out}); }

Mamba1CpuLayer::Mamba1CpuLayer(const ModelHparams& hp, const Mamba1Mixer& w)
    : hp_(hp),
      w_(w),
      in_bias_(to_f32(w.ssm_in_b)),
      conv_taps_by_slot_(to_f32_transposed(w.conv1d_w)),
      conv_bias_(to_f32(w.conv1d_b)),
      dt_bias_(to_f32(w.ssm_dt_b)),
      a_by_state_(to_f32_transposed(w.ssm_a)),
      d_(to_f32(w.ssm_d)),
      out_bias_(to_f32(w.ssm_out_b)) {}

uint64_t Mamba1CpuLayer::vector_bytes() const {
    return float_bytes({&in_bias_, &conv_taps_by_slot_, &conv_bias_, &dt_bias_, &a_by_state_, &d_, &out_bias_});
}

void Mamba1CpuLayer::forward(const MixerBatch& batch, Mamba1Scratch& s, const Team& team) const {
    const int64_t d_model = hp_.d_model, d_inner = hp_.d_inner, d_state = hp_.d_state, d_conv = hp_.d_conv;
    const int64_t dt_rank = hp_.dt_rank, n_xdbc = dt_rank + 2 * d_state, n_xz = 2 * d_inner;
    const int64_t n_rows = batch.n_rows, il = batch.layer;
    const int thread = team.thread, n_threads = team.n_threads;
    // This thread's channels: its rows of in_proj (x and z halves) and dt_proj, its conv and scan channels.
    const Range channels = thread_share(d_inner, thread, n_threads);

    for (const int64_t half : {int64_t{0}, d_inner}) {
        matmul_rows(w_.ssm_in, {batch.normed, d_model}, n_rows, {s.xz.data(), n_xz}, half + channels.begin,
                    half + channels.end);
        if (!in_bias_.empty()) {
            for (int64_t r = 0; r < n_rows; ++r) {
                for (int64_t i = half + channels.begin; i < half + channels.end; ++i) s.xz[r * n_xz + i] += in_bias_[i];
            }
        }
    }
    const ConvTaps taps{conv_taps_by_slot_.data(), d_inner, d_conv, conv_bias_.empty() ? nullptr : conv_bias_.data()};
    for (const SeqSpan& span : batch.spans) {
        conv_silu_channels(taps, channels.begin, channels.end, {batch.slots[span.slot].conv_layer(il), d_inner},
                           {s.xz.data() + span.first_row * n_xz, n_xz}, {s.xc.data() + span.first_row * d_inner, d_inner},
                           span.n_tokens);
    }
    team.pool.barrier();

    const Range xdbc_rows = thread_share(n_xdbc, thread, n_threads);
    matmul_rows(w_.ssm_x, {s.xc.data(), d_inner}, n_rows, {s.xdbc.data(), n_xdbc}, xdbc_rows.begin, xdbc_rows.end);
    team.pool.barrier();
    if (hp_.dt_b_c_rms) {
        for (int64_t r = thread; r < n_rows; r += n_threads) {
            float* row = s.xdbc.data() + r * n_xdbc;
            rms_norm(row, nullptr, dt_rank, hp_.mixer_rms_eps, row);
            rms_norm(row + dt_rank, nullptr, d_state, hp_.mixer_rms_eps, row + dt_rank);
            rms_norm(row + dt_rank + d_state, nullptr, d_state, hp_.mixer_rms_eps, row + dt_rank + d_state);
        }
        team.pool.barrier();
    }

    matmul_rows(w_.ssm_dt_w, {s.xdbc.data(), n_xdbc}, n_rows, {s.dt.data(), d_inner}, channels.begin, channels.end);
    const ScanWeights scan{a_by_state_.data(), d_inner, d_.data(), dt_bias_.data(), d_state};
    for (const SeqSpan& span : batch.spans) {
        const int64_t r0 = span.first_row;
        const ScanChannelInputs in{
            {s.dt.data() + r0 * d_inner, d_inner},
            {s.xc.data() + r0 * d_inner, d_inner},
            {s.xz.data() + r0 * n_xz + d_inner, n_xz},
            {s.xdbc.data() + r0 * n_xdbc + dt_rank, n_xdbc},
            {s.xdbc.data() + r0 * n_xdbc + dt_rank + d_state, n_xdbc},
        };
        scan_channels(in, scan, channels.begin, channels.end, batch.slots[span.slot].ssm_layer(il),
                      {s.y.data() + r0 * d_inner, d_inner}, span.n_tokens);
    }
    team.pool.barrier();

    add_out_proj(w_.ssm_out, out_bias_, {s.y.data(), d_inner}, s.out.data(), batch, team);
}

}  // namespace dendro::cpu
