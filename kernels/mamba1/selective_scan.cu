// Chunked parallel selective scan.
//
// Why this shape: the recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(dt_t A), b_t = dt_t B_t u_t) is sequential
// in t, but pairs (a, b) compose associatively: applying (a1, b1) then (a2, b2) is (a1 a2, a2 b1 + b2). So time
// can be split across threads and stitched together, which a purely per-channel sequential loop (only d_inner
// threads, one long dependent chain each) cannot use.
//
// Layout: activations are token-major ([t][c]), so a block takes kScanChannels = 32 consecutive channels (one
// per lane: every load of u, dt, z and store of y is a coalesced 128-byte row segment) of one sequence, and its
// kScanWarps warps split time. The sequence is walked in chunks of kScanWarps * kScanItems steps; in a chunk,
// warp w holds steps [w*kScanItems, (w+1)*kScanItems) of it in registers, loaded from device memory once, and
// the chunk's B and C rows are staged in shared memory (one coalesced load, so no step of the scan waits on
// L2). For each group of kScanStates states n in turn (independent recurrences, interleaved so that their
// latencies overlap):
//   1. every thread computes a_t, b_t for its steps (kept in registers) and composes them into one pair
//      (P, H): the effect of its steps on h starting from zero;
//   2. the pairs go to shared memory; after one barrier each warp folds the pairs of the warps before it into
//      the chunk's carried-in state h[c][n] (kept on chip across chunks) to get the state entering its steps;
//   3. each thread replays its steps from that state with the a_t, b_t still in registers and adds C_t[n] h_t
//      to its outputs; the last warp's final h is the state carried into the next chunk.
// The exponentials are computed once per (t, c, n), every input is read from device memory once, and the state
// never leaves the chip between the initial load and the final store. Barriers per chunk: d_state /
// kScanStates (4 at d_state 16, against 16 with one state at a time).
#include "mamba1/selective_scan.h"

#include "runtime/cuda_check.h"
#include "common/error.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kScanChannels = kWarpSize;
constexpr int kScanWarps = 16;
constexpr int kScanItems = 8;
constexpr int kScanStates = 4;
constexpr int kScanChunk = kScanWarps * kScanItems;
constexpr float kLog2e = 1.4426950408889634f;

// Dynamic shared memory, in floats: two (P, H) pair buffers (alternating between consecutive state groups, so
// one barrier per group suffices), two carried-state buffers (alternating between chunks: read for this chunk,
// written for the next), and the chunk's B and C rows.
constexpr size_t kPairFloats = 2 * kScanWarps * 2 * kScanStates * kScanChannels;
size_t carry_floats(int64_t d_state) { return 2 * static_cast<size_t>(d_state) * kScanChannels; }
size_t scan_shared_bytes(int64_t d_state) {
    return (kPairFloats + carry_floats(d_state) + kScanChunk * 2 * static_cast<size_t>(d_state)) * sizeof(float);
}

__global__ void __launch_bounds__(kScanWarps* kWarpSize) selective_scan_kernel(ScanParams p) {
    extern __shared__ float shared[];
    float* pairs = shared;                                   // [2][kScanWarps][2][kScanStates][kScanChannels]
    float* carry = shared + kPairFloats;                     // [2][d_state][kScanChannels]
    float* bc = carry + 2 * p.d_state * kScanChannels;       // [kScanChunk][B (d_state), C (d_state)]
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const int64_t c = static_cast<int64_t>(blockIdx.x) * kScanChannels + lane;
    const bool channel_valid = c < p.d_inner;
    const int64_t bc_width = 2 * p.d_state;

    for (int64_t i = threadIdx.x; i < p.d_state * kScanChannels; i += blockDim.x) {
        const int64_t n = i / kScanChannels, ch = static_cast<int64_t>(blockIdx.x) * kScanChannels + i % kScanChannels;
        carry[i] = ch < p.d_inner ? p.state[ch * p.d_state + n] : 0.0f;
    }
    const float dt_bias = channel_valid && p.dt_bias != nullptr ? p.dt_bias[c] : 0.0f;
    const float d_skip = channel_valid ? p.D[c] : 0.0f;

    int phase = 0;  // counts (chunk, state group) steps; selects the pair buffer
    const int64_t n_chunks = (p.n_tokens + kScanChunk - 1) / kScanChunk;
    for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
        const int64_t t_chunk = chunk * kScanChunk;
        for (int64_t i = threadIdx.x; i < kScanChunk * bc_width; i += blockDim.x) {
            const int64_t row = i / bc_width, k = i % bc_width, t = t_chunk + row;
            float value = 0.0f;  // steps past the end: b = 0 (and dt = 0, so a = 1)
            if (t < p.n_tokens) value = k < p.d_state ? p.B[t * p.bc_stride + k] : p.C[t * p.bc_stride + k - p.d_state];
            bc[i] = value;
        }
        const int64_t t_first = t_chunk + warp * kScanItems;
        float u[kScanItems], dt[kScanItems], y[kScanItems];
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
            const int64_t t = t_first + i;
            const bool valid = channel_valid && t < p.n_tokens;
            u[i] = valid ? p.u[t * p.u_stride + c] : 0.0f;
            dt[i] = valid ? softplus(p.dt[t * p.dt_stride + c] + dt_bias) : 0.0f;  // dt 0: a = 1, b = 0
            y[i] = 0.0f;
        }
        __syncthreads();  // bc staged (and, in the first chunk, the carried state loaded)
        const float* carry_in = carry + (chunk % 2) * p.d_state * kScanChannels;
        float* carry_out = carry + ((chunk + 1) % 2) * p.d_state * kScanChannels;
        const float* my_bc = bc + warp * kScanItems * bc_width;  // this warp's steps

        for (int64_t n0 = 0; n0 < p.d_state; n0 += kScanStates, ++phase) {
            float a[kScanStates][kScanItems], b[kScanStates][kScanItems];
            float prod[kScanStates], local[kScanStates];
#pragma unroll
            for (int s = 0; s < kScanStates; ++s) {
                const int64_t n = n0 + s;
                const bool state_valid = n < p.d_state;  // a missing state of the last group: a = 1, b = 0
                const float a_log2 = channel_valid && state_valid ? p.A[c * p.d_state + n] * kLog2e : 0.0f;
                prod[s] = 1.0f;
                local[s] = 0.0f;
#pragma unroll
                for (int i = 0; i < kScanItems; ++i) {
                    a[s][i] = exp2f(dt[i] * a_log2);
                    b[s][i] = state_valid ? dt[i] * my_bc[i * bc_width + n] * u[i] : 0.0f;
                    local[s] = a[s][i] * local[s] + b[s][i];
                    prod[s] *= a[s][i];
                }
            }
            float* pair_buffer = pairs + (phase % 2) * kScanWarps * 2 * kScanStates * kScanChannels;
            auto pair_at = [&](int w, int which, int s) -> float& {
                return pair_buffer[((w * 2 + which) * kScanStates + s) * kScanChannels + lane];
            };
#pragma unroll
            for (int s = 0; s < kScanStates; ++s) {
                pair_at(warp, 0, s) = prod[s];
                pair_at(warp, 1, s) = local[s];
            }
            __syncthreads();
            float h[kScanStates];
#pragma unroll
            for (int s = 0; s < kScanStates; ++s) {
                h[s] = n0 + s < p.d_state ? carry_in[(n0 + s) * kScanChannels + lane] : 0.0f;
            }
            for (int w = 0; w < warp; ++w) {
#pragma unroll
                for (int s = 0; s < kScanStates; ++s) h[s] = pair_at(w, 0, s) * h[s] + pair_at(w, 1, s);
            }
#pragma unroll
            for (int i = 0; i < kScanItems; ++i) {
#pragma unroll
                for (int s = 0; s < kScanStates; ++s) {
                    h[s] = a[s][i] * h[s] + b[s][i];
                    if (n0 + s < p.d_state) y[i] += my_bc[i * bc_width + p.d_state + n0 + s] * h[s];
                }
            }
            if (warp == kScanWarps - 1) {
#pragma unroll
                for (int s = 0; s < kScanStates; ++s) {
                    if (n0 + s < p.d_state) carry_out[(n0 + s) * kScanChannels + lane] = h[s];
                }
            }
        }
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
            const int64_t t = t_first + i;
            if (channel_valid && t < p.n_tokens) {
                const float gate = p.z[t * p.z_stride + c];
                p.y[t * p.y_stride + c] = (y[i] + d_skip * u[i]) * silu(gate);
            }
        }
        __syncthreads();  // carry_out complete before the next chunk reads it as carry_in; bc free to refill
    }

    const float* final_state = carry + (n_chunks % 2) * p.d_state * kScanChannels;
    for (int64_t i = threadIdx.x; i < p.d_state * kScanChannels; i += blockDim.x) {
        const int64_t n = i / kScanChannels, ch = static_cast<int64_t>(blockIdx.x) * kScanChannels + i % kScanChannels;
        if (ch < p.d_inner) p.state[ch * p.d_state + n] = final_state[i];
    }
}

}  // namespace

void launch_selective_scan(const ScanParams& params, cudaStream_t stream) {
    if (params.n_tokens == 0 || params.d_inner == 0) return;
    const size_t shared_bytes = scan_shared_bytes(params.d_state);
    check(cudaFuncSetAttribute(selective_scan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(shared_bytes)),
          concat("allowing ", shared_bytes, " bytes of shared memory for the selective scan (d_state ",
                 params.d_state, ")"));
    const auto blocks = static_cast<unsigned>((params.d_inner + kScanChannels - 1) / kScanChannels);
    selective_scan_kernel<<<blocks, kScanWarps * kWarpSize, shared_bytes, stream>>>(params);
    check_launch("selective_scan_kernel");
}

}  // namespace dendro::cuda
