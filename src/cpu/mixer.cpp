#include "cpu/mixer.h"

namespace dendro::cpu {

void add_out_proj(const TensorView& w_out, const std::vector<float>& out_bias, ConstRows y, float* out,
                  const MixerBatch& batch, const Team& team) {
    const int64_t d_model = w_out.n_rows();
    matmul_team_rows(w_out, y, batch.n_rows, {out, d_model}, team, [&](Range model_rows) {
        for (int64_t r = 0; r < batch.n_rows; ++r) {
            float* resid = batch.resid + r * d_model;
            const float* o = out + r * d_model;
            for (int64_t i = model_rows.begin; i < model_rows.end; ++i) {
                resid[i] += out_bias.empty() ? o[i] : o[i] + out_bias[i];
            }
        }
    });
    team.pool.barrier();
}

}  // namespace dendro::cpu
