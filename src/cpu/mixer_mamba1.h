// The Mamba-1 mixer on the CPU (HF MambaMixer's slow path in fp32; Falcon-Mamba's dt/B/C norms included).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/mixer.h"
#include "model/model.h"

namespace dendro::cpu {

// Activations of a batch, one row per token, shared by every Mamba-1 layer.
struct Mamba1Scratch {
    std::vector<float> xz, xc, xdbc, dt, y, out;
    void reserve(const ModelHparams& hp, int64_t n_rows);
    uint64_t bytes() const;
};

class Mamba1CpuLayer {
public:
    Mamba1CpuLayer(const ModelHparams& hp, const Mamba1Mixer& weights);
    // Adds the mixer's output for every row of the batch to batch.resid (run by every thread of the team).
    void forward(const MixerBatch& batch, Mamba1Scratch& scratch, const Team& team) const;
    uint64_t vector_bytes() const;  // the fp32 copies of the per-layer vectors
    const Mamba1Mixer& weights() const { return w_; }

private:
    const ModelHparams& hp_;
    const Mamba1Mixer& w_;
    std::vector<float> in_bias_, conv_taps_by_slot_, conv_bias_, dt_bias_, a_by_state_, d_, out_bias_;
};

}  // namespace dendro::cpu
