// The three SSD kernels (see ssd_prefill.h). Each chunk kernel is one block of four warps per (chunk, head);
// the chunk's operands are staged in shared memory as fp16, padded with zeros to whole 16x16 tiles (odd
// head_dim and d_state, a short last chunk), and multiplied with WMMA into fp32 accumulators. Tokens past
// the end of the prompt get dt = 0: they neither decay nor add to any state, and their outputs are not
// written.
#include "mamba2/ssd_prefill.h"

#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>

#include "common/error.h"
#include "runtime/cuda_check.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

using namespace nvcuda;

constexpr int kSsdWarps = 4;
constexpr int kSsdThreads = kSsdWarps * kWarpSize;
constexpr int kStateThreads = 256;
constexpr int kTile = static_cast<int>(kSsdTile);

using Accumulator = wmma::fragment<wmma::accumulator, kTile, kTile, kTile, float>;
using RowA = wmma::fragment<wmma::matrix_a, kTile, kTile, kTile, half, wmma::row_major>;
using ColA = wmma::fragment<wmma::matrix_a, kTile, kTile, kTile, half, wmma::col_major>;
using RowB = wmma::fragment<wmma::matrix_b, kTile, kTile, kTile, half, wmma::row_major>;
using ColB = wmma::fragment<wmma::matrix_b, kTile, kTile, kTile, half, wmma::col_major>;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The chunk, the head's width and the state's, each padded to whole tiles.
struct Dims {
    int chunk = 0;
    int head_dim = 0, d_state = 0;
    int padded_head_dim = 0, padded_state = 0;
};

Dims dims_of(const SsdPrefillParams& p) {
    Dims d;
    d.chunk = static_cast<int>(p.chunk);
    d.head_dim = static_cast<int>(p.shape.head_dim);
    d.d_state = static_cast<int>(p.shape.d_state);
    d.padded_head_dim = static_cast<int>(round_up(p.shape.head_dim, kSsdTile));
    d.padded_state = static_cast<int>(round_up(p.shape.d_state, kSsdTile));
    return d;
}

size_t chunk_state_shared_bytes(const Dims& d) {
    const size_t L = d.chunk, P = d.padded_head_dim, N = d.padded_state;
    return 2 * L * sizeof(float) + L * P * sizeof(half) + L * N * sizeof(half) + P * N * sizeof(float);
}

size_t chunk_scan_shared_bytes(const Dims& d) {
    const size_t L = d.chunk, P = d.padded_head_dim, N = d.padded_state;
    return 2 * L * sizeof(float) + 2 * L * N * sizeof(half) + L * std::max(L, P) * sizeof(float) + L * L * sizeof(half) +
           L * P * sizeof(half) + 2 * P * N * sizeof(half);
}

// dt of the chunk's tokens (0 past the prompt) and cum_t = sum_{i<=t} dt_i A, in token order as the CPU sums.
__device__ void chunk_time_steps(const SsdPrefillParams& p, const Dims& d, int64_t t0, int n, int head, float* dt,
                                 float* cum) {
    for (int t = threadIdx.x; t < d.chunk; t += blockDim.x) {
        float value = 0.0f;
        if (t < n) {
            const float raw = p.dt[(t0 + t) * p.dt_stride + head] + p.dt_bias[head];
            value = fminf(fmaxf(softplus(raw), p.time_step_min), p.time_step_max);
        }
        dt[t] = value;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        const float a = p.A[head];
        float sum = 0.0f;
        for (int t = 0; t < d.chunk; ++t) {
            sum += dt[t] * a;
            cum[t] = sum;
        }
    }
    __syncthreads();
}

// The chunk's end state from a zero start: S = X^T diag(exp(cum_last - cum) dt) B, head_dim x d_state.
__global__ void __launch_bounds__(kSsdThreads)
    ssd_chunk_state_kernel(SsdPrefillParams p, Dims d, float* __restrict__ chunk_states, float* __restrict__ chunk_decays) {
    extern __shared__ __align__(32) unsigned char shared[];
    const int L = d.chunk, P = d.head_dim, N = d.d_state, Pp = d.padded_head_dim, Np = d.padded_state;
    const int chunk = blockIdx.x, head = blockIdx.y;
    const int64_t t0 = static_cast<int64_t>(chunk) * L;
    const int n = static_cast<int>(min(static_cast<int64_t>(L), p.n_tokens - t0));
    const int64_t group = head / (p.shape.n_head / p.shape.n_group);
    float* dt = reinterpret_cast<float*>(shared);
    float* cum = dt + L;
    half* xw = reinterpret_cast<half*>(cum + L);  // [L][Pp]: the weighted inputs
    half* b = xw + L * Pp;                        // [L][Np]
    float* s = reinterpret_cast<float*>(b + L * Np);  // [Pp][Np]
    chunk_time_steps(p, d, t0, n, head, dt, cum);
    const float last = cum[L - 1];

    for (int i = threadIdx.x; i < L * Pp; i += kSsdThreads) {
        const int t = i / Pp, q = i % Pp;
        float v = 0.0f;
        if (t < n && q < P) v = expf(last - cum[t]) * dt[t] * p.x[(t0 + t) * p.x_stride + head * P + q];
        xw[i] = __float2half(v);
    }
    for (int i = threadIdx.x; i < L * Np; i += kSsdThreads) {
        const int t = i / Np, k = i % Np;
        const float v = t < n && k < N ? p.B[(t0 + t) * p.bc_stride + group * N + k] : 0.0f;
        b[i] = __float2half(v);
    }
    __syncthreads();

    const int warp = threadIdx.x / kWarpSize;
    const int tiles_p = Pp / kTile, tiles_n = Np / kTile;
    for (int tile = warp; tile < tiles_p * tiles_n; tile += kSsdWarps) {
        const int tp = tile / tiles_n, tn = tile % tiles_n;
        Accumulator acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < L; k += kTile) {
            ColA a;  // X^T: element (q, t) lies at xw[t * Pp + q]
            RowB bf;
            wmma::load_matrix_sync(a, xw + k * Pp + tp * kTile, Pp);
            wmma::load_matrix_sync(bf, b + k * Np + tn * kTile, Np);
            wmma::mma_sync(acc, a, bf, acc);
        }
        wmma::store_matrix_sync(s + tp * kTile * Np + tn * kTile, acc, Np, wmma::mem_row_major);
    }
    __syncthreads();

    const int64_t per_head = static_cast<int64_t>(P) * N;
    float* out = chunk_states + (static_cast<int64_t>(chunk) * p.shape.n_head + head) * per_head;
    for (int i = threadIdx.x; i < P * N; i += kSsdThreads) out[i] = s[(i / N) * Np + i % N];
    if (threadIdx.x == 0) chunk_decays[static_cast<int64_t>(chunk) * p.shape.n_head + head] = last;
}

// Chunk after chunk: start_c = running; running = exp(decay_c) running + S_c. The start states replace the
// chunk states in place; the last running state goes back to the slot.
__global__ void __launch_bounds__(kStateThreads)
    ssd_state_passing_kernel(float* __restrict__ state, float* __restrict__ chunk_states,
                             const float* __restrict__ chunk_decays, int64_t n_chunks, int64_t n_head, int64_t per_head) {
    const int64_t e = static_cast<int64_t>(blockIdx.x) * kStateThreads + threadIdx.x;
    const int64_t head = blockIdx.y;
    if (e >= per_head) return;
    float* h = state + head * per_head + e;
    float running = *h;
    for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t index = (c * n_head + head) * per_head + e;
        const float local = chunk_states[index];
        chunk_states[index] = running;
        running = expf(chunk_decays[c * n_head + head]) * running + local;
    }
    *h = running;
}

// The chunk's outputs: y = (C B^T o L) X + diag(exp(cum)) C h0^T + D x.
__global__ void __launch_bounds__(kSsdThreads)
    ssd_chunk_scan_kernel(SsdPrefillParams p, Dims d, const float* __restrict__ start_states) {
    extern __shared__ __align__(32) unsigned char shared[];
    const int L = d.chunk, P = d.head_dim, N = d.d_state, Pp = d.padded_head_dim, Np = d.padded_state;
    const int chunk = blockIdx.x, head = blockIdx.y;
    const int64_t t0 = static_cast<int64_t>(chunk) * L;
    const int n = static_cast<int>(min(static_cast<int64_t>(L), p.n_tokens - t0));
    const int64_t group = head / (p.shape.n_head / p.shape.n_group);
    float* dt = reinterpret_cast<float*>(shared);
    float* cum = dt + L;
    half* c_h = reinterpret_cast<half*>(cum + L);  // [L][Np]
    half* b_h = c_h + L * Np;                      // [L][Np]
    float* gy = reinterpret_cast<float*>(b_h + L * Np);  // C B^T ([L][L]), later the outputs ([L][Pp])
    half* m_h = reinterpret_cast<half*>(gy + L * max(L, Pp));  // [L][L]: C B^T o L
    half* x_h = m_h + L * L;                       // [L][Pp]
    half* hi = x_h + L * Pp;                       // [Pp][Np]: start state, high part
    half* lo = hi + Pp * Np;                       // [Pp][Np]: low part
    chunk_time_steps(p, d, t0, n, head, dt, cum);

    for (int i = threadIdx.x; i < L * Np; i += kSsdThreads) {
        const int t = i / Np, k = i % Np;
        const bool inside = t < n && k < N;
        const int64_t row = (t0 + t) * p.bc_stride + group * N + k;
        c_h[i] = __float2half(inside ? p.C[row] : 0.0f);
        b_h[i] = __float2half(inside ? p.B[row] : 0.0f);
    }
    for (int i = threadIdx.x; i < L * Pp; i += kSsdThreads) {
        const int t = i / Pp, q = i % Pp;
        x_h[i] = __float2half(t < n && q < P ? p.x[(t0 + t) * p.x_stride + head * P + q] : 0.0f);
    }
    const float* h0 = start_states + (static_cast<int64_t>(chunk) * p.shape.n_head + head) * P * N;
    for (int i = threadIdx.x; i < Pp * Np; i += kSsdThreads) {
        const int q = i / Np, k = i % Np;
        const float v = q < P && k < N ? h0[q * N + k] : 0.0f;
        const half high = __float2half(v);
        hi[i] = high;
        lo[i] = __float2half(v - __half2float(high));
    }
    __syncthreads();

    const int warp = threadIdx.x / kWarpSize;
    const int tiles_l = L / kTile, tiles_p = Pp / kTile;
    // C B^T, the tiles on and below the diagonal (the mask zeroes the rest).
    for (int tile = warp; tile < tiles_l * tiles_l; tile += kSsdWarps) {
        const int ti = tile / tiles_l, tj = tile % tiles_l;
        if (tj > ti) continue;
        Accumulator acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < Np; k += kTile) {
            RowA a;
            ColB bf;  // B^T: element (k, s) lies at b_h[s * Np + k]
            wmma::load_matrix_sync(a, c_h + ti * kTile * Np + k, Np);
            wmma::load_matrix_sync(bf, b_h + tj * kTile * Np + k, Np);
            wmma::mma_sync(acc, a, bf, acc);
        }
        wmma::store_matrix_sync(gy + ti * kTile * L + tj * kTile, acc, L, wmma::mem_row_major);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < L * L; i += kSsdThreads) {
        const int t = i / L, s = i % L;
        const float v = s <= t && t < n ? gy[i] * expf(cum[t] - cum[s]) * dt[s] : 0.0f;
        m_h[i] = __float2half(v);
    }
    __syncthreads();

    // From the start state: C h0^T (high and low parts), then each row scaled by exp(cum_t).
    float* y = gy;  // [L][Pp]
    for (int tile = warp; tile < tiles_l * tiles_p; tile += kSsdWarps) {
        const int ti = tile / tiles_p, tq = tile % tiles_p;
        Accumulator acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < Np; k += kTile) {
            RowA a;
            ColB high, low;  // h0^T: element (k, q) lies at hi[q * Np + k]
            wmma::load_matrix_sync(a, c_h + ti * kTile * Np + k, Np);
            wmma::load_matrix_sync(high, hi + tq * kTile * Np + k, Np);
            wmma::load_matrix_sync(low, lo + tq * kTile * Np + k, Np);
            wmma::mma_sync(acc, a, high, acc);
            wmma::mma_sync(acc, a, low, acc);
        }
        wmma::store_matrix_sync(y + ti * kTile * Pp + tq * kTile, acc, Pp, wmma::mem_row_major);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < L * Pp; i += kSsdThreads) y[i] *= expf(cum[i / Pp]);
    __syncthreads();

    // Within the chunk: += (C B^T o L) X, over the tiles of M on and below the diagonal.
    for (int tile = warp; tile < tiles_l * tiles_p; tile += kSsdWarps) {
        const int ti = tile / tiles_p, tq = tile % tiles_p;
        Accumulator acc;
        wmma::load_matrix_sync(acc, y + ti * kTile * Pp + tq * kTile, Pp, wmma::mem_row_major);
        for (int tk = 0; tk <= ti; ++tk) {
            RowA a;
            RowB bf;
            wmma::load_matrix_sync(a, m_h + ti * kTile * L + tk * kTile, L);
            wmma::load_matrix_sync(bf, x_h + tk * kTile * Pp + tq * kTile, Pp);
            wmma::mma_sync(acc, a, bf, acc);
        }
        wmma::store_matrix_sync(y + ti * kTile * Pp + tq * kTile, acc, Pp, wmma::mem_row_major);
    }
    __syncthreads();

    const float skip = p.D[head];
    for (int i = threadIdx.x; i < n * P; i += kSsdThreads) {
        const int t = i / P, q = i % P;
        const float x = p.x[(t0 + t) * p.x_stride + head * P + q];
        p.y[(t0 + t) * p.y_stride + head * P + q] = y[t * Pp + q] + skip * x;
    }
}

int max_shared_bytes() {
    int device = 0, bytes = 0;
    check(cudaGetDevice(&device), "reading the current device");
    check(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "reading the device's shared memory per block");
    return bytes;
}

template <typename Kernel>
void allow_shared(Kernel kernel, size_t bytes, int limit, const char* name, const SsdPrefillParams& p) {
    if (bytes > static_cast<size_t>(limit)) {
        fail("SSD prefill: ", name, " needs ", bytes, " bytes of shared memory at chunk ", p.chunk, ", head_dim ",
             p.shape.head_dim, ", d_state ", p.shape.d_state, "; the device allows ", limit, " (use a shorter chunk)");
    }
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          concat("allowing ", bytes, " bytes of shared memory for ", name));
}

int64_t chunk_count(int64_t n_tokens, int64_t chunk) { return (n_tokens + chunk - 1) / chunk; }

}  // namespace

bool ssd_shape_supported(const SsdShape& s) {
    return s.n_head > 0 && s.n_group > 0 && s.n_head % s.n_group == 0 && s.head_dim > 0 &&
           s.head_dim <= kMaxSsdHeadDim && s.d_state > 0 && s.d_state <= kMaxSsdState;
}

SsdWorkspace::SsdWorkspace(const SsdShape& shape, int64_t max_tokens, int64_t chunk)
    : max_tokens_(max_tokens), chunk_(chunk) {
    const auto chunks = static_cast<size_t>(chunk_count(max_tokens, chunk));
    const auto heads = static_cast<size_t>(shape.n_head);
    chunk_states_ = DeviceBuffer(chunks * heads * shape.head_dim * shape.d_state * sizeof(float), "SSD chunk states");
    chunk_decays_ = DeviceBuffer(chunks * heads * sizeof(float), "SSD chunk decays");
}

void launch_ssd_prefill(const SsdPrefillParams& p, const SsdWorkspace& workspace, cudaStream_t stream) {
    if (!ssd_shape_supported(p.shape)) {
        fail("SSD prefill: unsupported shape (n_head ", p.shape.n_head, ", n_group ", p.shape.n_group, ", head_dim ",
             p.shape.head_dim, ", d_state ", p.shape.d_state, "; head_dim and d_state at most ", kMaxSsdHeadDim, ")");
    }
    if (p.chunk < kSsdTile || p.chunk > kMaxSsdChunk || p.chunk % kSsdTile != 0) {
        fail("SSD prefill: chunk ", p.chunk, " is not a multiple of ", kSsdTile, " in ", kSsdTile, "..", kMaxSsdChunk);
    }
    if (p.n_tokens <= 0) return;
    const int64_t n_chunks = chunk_count(p.n_tokens, p.chunk);
    if (n_chunks > chunk_count(workspace.max_tokens(), workspace.chunk())) {
        fail("SSD prefill: ", p.n_tokens, " tokens in chunks of ", p.chunk, " exceed the workspace (",
             workspace.max_tokens(), " tokens in chunks of ", workspace.chunk(), ")");
    }
    const Dims d = dims_of(p);
    const int limit = max_shared_bytes();
    const size_t state_bytes = chunk_state_shared_bytes(d), scan_bytes = chunk_scan_shared_bytes(d);
    allow_shared(ssd_chunk_state_kernel, state_bytes, limit, "ssd_chunk_state_kernel", p);
    allow_shared(ssd_chunk_scan_kernel, scan_bytes, limit, "ssd_chunk_scan_kernel", p);

    const dim3 chunk_grid(static_cast<unsigned>(n_chunks), static_cast<unsigned>(p.shape.n_head));
    ssd_chunk_state_kernel<<<chunk_grid, kSsdThreads, state_bytes, stream>>>(p, d, workspace.chunk_states(),
                                                                            workspace.chunk_decays());
    check_launch("ssd_chunk_state_kernel");
    const int64_t per_head = p.shape.head_dim * p.shape.d_state;
    const dim3 state_grid(static_cast<unsigned>((per_head + kStateThreads - 1) / kStateThreads),
                          static_cast<unsigned>(p.shape.n_head));
    ssd_state_passing_kernel<<<state_grid, kStateThreads, 0, stream>>>(p.state, workspace.chunk_states(),
                                                                      workspace.chunk_decays(), n_chunks,
                                                                      p.shape.n_head, per_head);
    check_launch("ssd_state_passing_kernel");
    ssd_chunk_scan_kernel<<<chunk_grid, kSsdThreads, scan_bytes, stream>>>(p, d, workspace.chunk_states());
    check_launch("ssd_chunk_scan_kernel");
}

}  // namespace dendro::cuda
