// The Mamba-1 mixer on the CPU: in_proj -> causal conv + SiLU -> x_proj -> (Falcon: dt/B/C norms) -> dt_proj
// -> selective scan with the gate -> out_proj: in_proj, x_proj and out_proj's rows shared out as the threads
// become free (matmul_team_rows), dt_proj and the scan in fixed shares of the channels.
#include "cpu/mixer_mamba1.h"

#include <algorithm>

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
    // in_proj's rows shared out among the threads, and the conv of the x channels (rows below d_inner) among
    // each thread's rows; the scan's channels are this thread's fixed share (its rows of dt_proj).
    const ConvTaps taps{conv_taps_by_slot_.data(), d_inner, d_conv, conv_bias_.empty() ? nullptr : conv_bias_.data()};
    matmul_team_rows(w_.ssm_in, {batch.normed, d_model}, n_rows, {s.xz.data(), n_xz}, team, [&](Range rows) {
        if (!in_bias_.empty()) {
            for (int64_t r = 0; r < n_rows; ++r) {
                for (int64_t i = rows.begin; i < rows.end; ++i) s.xz[r * n_xz + i] += in_bias_[i];
            }
        }
        const int64_t conv_end = std::min(rows.end, d_inner);
        if (rows.begin >= conv_end) return;
        for (const SeqSpan& span : batch.spans) {
            conv_silu_channels(taps, rows.begin, conv_end, {batch.slots[span.slot].conv_layer(il), d_inner},
                               {s.xz.data() + span.first_row * n_xz, n_xz}, {s.xc.data() + span.first_row * d_inner, d_inner},
                               span.n_tokens);
        }
    }, /*parts=*/2);
    team.pool.barrier();

    matmul_team_rows(w_.ssm_x, {s.xc.data(), d_inner}, n_rows, {s.xdbc.data(), n_xdbc}, team);
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

    const Range channels = thread_share(d_inner, thread, n_threads);
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
