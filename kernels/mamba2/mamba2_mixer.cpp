#include "mamba2/mamba2_mixer.h"

#include "ops/conv1d.h"
#include "mamba2/gated_norm.h"
#include "linear/projection.h"

namespace dendro::cuda {
namespace {

SsdShape ssd_shape(const ModelHparams& hp) { return SsdShape{hp.n_head, hp.head_dim, hp.d_state, hp.n_group}; }

ConvWeights conv_weights(const ModelHparams& hp, const DeviceLayer& w) {
    return ConvWeights{hp.conv_channels(), hp.d_conv, w.conv_w, w.conv_b};
}

// in_proj, whose rows are [z (d_inner), xBC (conv_channels), dt (n_head)].
void in_proj(const ModelHparams& hp, const DeviceLayer& w, const float* normed, int64_t n, const Mamba2Activations& a,
             Gemm& gemm, cudaStream_t stream) {
    project(w.ssm_in, w.ssm_in_b, normed, hp.d_model, n, a.zxbcdt, hp.in_proj_rows(), gemm, stream);
}

void out_proj(const ModelHparams& hp, const DeviceLayer& w, int64_t n, const Mamba2Activations& a, float* out,
              Gemm& gemm, cudaStream_t stream) {
    project(w.ssm_out, w.ssm_out_b, a.y, hp.d_inner, n, out, hp.d_model, gemm, stream);
}

}  // namespace

bool mamba2_shape_supported(const ModelHparams& hp) {
    return hp.arch == Architecture::Mamba2 && ssd_shape_supported(ssd_shape(hp)) && hp.d_conv >= 1 &&
           hp.d_conv <= kMaxConvWidth && hp.d_inner == hp.n_head * hp.head_dim;
}

Mamba2Workspace::Mamba2Workspace(const ModelHparams& hp, int64_t max_prefill_tokens, int max_decode_batch)
    : ssd_(ssd_shape(hp), max_prefill_tokens, kDefaultSsdChunk),
      decode_(max_decode_batch, hp.n_head, hp.head_dim, hp.n_group) {}

void run_mamba2_prefill(const ModelHparams& hp, const DeviceLayer& w, const float* normed, int64_t n,
                        const Mamba2SlotStates& states, int slot, const Mamba2Activations& a, float* out,
                        const Mamba2Workspace& workspace, Gemm& gemm, cudaStream_t stream) {
    const int64_t n_in = hp.in_proj_rows(), n_conv = hp.conv_channels(), d_inner = hp.d_inner;
    in_proj(hp, w, normed, n, a, gemm, stream);
    launch_conv1d_prefill(conv_weights(hp, w), a.zxbcdt + d_inner, n_in, n, states.conv + slot * states.conv_slot_stride,
                          a.xbc, stream);

    SsdPrefillParams p;
    p.shape = ssd_shape(hp);
    p.n_tokens = n;
    p.chunk = workspace.ssd().chunk();
    p.x = a.xbc;
    p.x_stride = n_conv;
    p.B = a.xbc + d_inner;
    p.C = a.xbc + d_inner + hp.n_group * hp.d_state;
    p.bc_stride = n_conv;
    p.dt = a.zxbcdt + d_inner + n_conv;
    p.dt_stride = n_in;
    p.dt_bias = w.ssm_dt_b;
    p.A = w.ssm_a;
    p.D = w.ssm_d;
    p.time_step_min = hp.time_step_min;
    p.time_step_max = hp.time_step_max;
    p.state = states.ssm + slot * states.ssm_slot_stride;
    p.y = a.y;
    p.y_stride = d_inner;
    launch_ssd_prefill(p, workspace.ssd(), stream);

    GatedNormParams g;
    g.n_rows = n;
    g.d_inner = d_inner;
    g.n_group = hp.n_group;
    g.y = a.y;
    g.y_stride = d_inner;
    g.z = a.zxbcdt;
    g.z_stride = n_in;
    g.weight = w.ssm_norm;
    g.eps = hp.norm_eps;
    launch_gated_rms_norm(g, stream);
    out_proj(hp, w, n, a, out, gemm, stream);
}

void run_mamba2_decode(const ModelHparams& hp, const DeviceLayer& w, const float* normed, int n,
                       const Mamba2SlotStates& states, const Mamba2Activations& a, float* out,
                       const Mamba2Workspace& workspace, Gemm& gemm, cudaStream_t stream) {
    const int64_t n_in = hp.in_proj_rows(), n_conv = hp.conv_channels(), d_inner = hp.d_inner;
    in_proj(hp, w, normed, n, a, gemm, stream);
    launch_conv1d_decode(conv_weights(hp, w), a.zxbcdt + d_inner, n_in, n, states.conv, states.conv_slot_stride,
                         states.slots, a.xbc, stream);

    Mamba2DecodeParams p;
    p.n_batch = n;
    p.n_head = hp.n_head;
    p.head_dim = hp.head_dim;
    p.d_state = hp.d_state;
    p.n_group = hp.n_group;
    p.zxbcdt = a.zxbcdt;
    p.zxbcdt_stride = n_in;
    p.dt_offset = d_inner + n_conv;
    p.xbc = a.xbc;
    p.xbc_stride = n_conv;
    p.dt_bias = w.ssm_dt_b;
    p.A = w.ssm_a;
    p.D = w.ssm_d;
    p.norm_weight = w.ssm_norm;
    p.eps = hp.norm_eps;
    p.time_step_min = hp.time_step_min;
    p.time_step_max = hp.time_step_max;
    p.states = states.ssm;
    p.slot_stride = states.ssm_slot_stride;
    p.slots = states.slots;
    p.y = a.y;
    p.y_stride = d_inner;
    launch_mamba2_decode(p, workspace.decode(), stream);
    out_proj(hp, w, n, a, out, gemm, stream);
}

}  // namespace dendro::cuda
