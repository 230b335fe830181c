// Grid: (head x row block, sequence). A block owns kRowsPerBlock rows of one head's state (head_dim x
// d_state) for one sequence: each warp walks its rows with the lanes across d_state, so every state read and
// write is coalesced; B and C of the head's group sit in shared memory. At mamba2-2.7b's shape (80 heads of
// 64 rows) a batch-1 step runs 320 blocks, enough to keep the H200's SMs streaming the 2.6 MB state.
#include "mamba2/ssm_decode_mamba2.h"

#include "common/error.h"
#include "runtime/cuda_check.h"
#include "weights/weight_access.cuh"

namespace dendro::cuda {
namespace {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * kWarpSize;
constexpr int64_t kRowsPerBlock = 16;

__host__ __device__ int64_t row_blocks(int64_t head_dim) { return (head_dim + kRowsPerBlock - 1) / kRowsPerBlock; }

__global__ void __launch_bounds__(kDecodeThreads)
    mamba2_decode_kernel(Mamba2DecodeParams p, float* __restrict__ partial_sums, unsigned* __restrict__ arrivals) {
    extern __shared__ float bc[];  // B then C, d_state each
    __shared__ float warp_sums[kDecodeWarps];
    __shared__ bool last_block;
    __shared__ float group_scale;
    const int64_t blocks_per_head = row_blocks(p.head_dim);
    const int64_t head = blockIdx.x / blocks_per_head, row0 = (blockIdx.x % blocks_per_head) * kRowsPerBlock;
    const int b = blockIdx.y;
    const int64_t P = p.head_dim, N = p.d_state, d_inner = p.n_head * P;
    const int64_t heads_per_group = p.n_head / p.n_group, group = head / heads_per_group;
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;

    const float* xbc = p.xbc + b * p.xbc_stride;
    const float* B = xbc + d_inner + group * N;
    const float* C = xbc + d_inner + p.n_group * N + group * N;
    for (int64_t k = threadIdx.x; k < N; k += kDecodeThreads) {
        bc[k] = B[k];
        bc[N + k] = C[k];
    }
    const float* row = p.zxbcdt + b * p.zxbcdt_stride;
    const float dt =
        fminf(fmaxf(softplus(row[p.dt_offset + head] + p.dt_bias[head]), p.time_step_min), p.time_step_max);
    const float decay = expf(dt * p.A[head]);
    float* h = p.states + p.slots[b] * p.slot_stride + head * P * N;
    float* y = p.y + b * p.y_stride;
    __syncthreads();

    float sum_sq = 0.0f;
    const int64_t row_end = min(row0 + kRowsPerBlock, P);
    for (int64_t q = row0 + warp; q < row_end; q += kDecodeWarps) {
        const int64_t channel = head * P + q;
        const float x = xbc[channel];
        const float dtx = dt * x;
        float acc = 0.0f;
        for (int64_t k = lane; k < N; k += kWarpSize) {
            const float next = decay * h[q * N + k] + dtx * bc[k];
            h[q * N + k] = next;
            acc += bc[N + k] * next;
        }
        acc = warp_sum(acc);
        if (lane == 0) {
            const float g = (acc + p.D[head] * x) * silu(row[channel]);
            y[channel] = g;
            sum_sq += g * g;
        }
    }
    if (lane == 0) warp_sums[warp] = sum_sq;
    __syncthreads();
    const int64_t blocks_per_group = heads_per_group * blocks_per_head;
    const int64_t group_block = (head % heads_per_group) * blocks_per_head + blockIdx.x % blocks_per_head;
    float* sums = partial_sums + (static_cast<int64_t>(b) * p.n_group + group) * blocks_per_group;
    unsigned* arrived = arrivals + static_cast<int64_t>(b) * p.n_group + group;
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int w = 0; w < kDecodeWarps; ++w) total += warp_sums[w];
        sums[group_block] = total;
        __threadfence();  // the sum and this block's outputs are visible before the arrival is counted
        last_block = atomicAdd(arrived, 1u) == static_cast<unsigned>(blocks_per_group - 1);
    }
    __syncthreads();
    if (!last_block) return;

    // The last block of the group: every other block's outputs and sums are in L2 (read past L1).
    __threadfence();
    const int64_t group_size = heads_per_group * P;
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int64_t i = 0; i < blocks_per_group; ++i) total += __ldcg(sums + i);
        group_scale = rsqrtf(total / static_cast<float>(group_size) + p.eps);
        *arrived = 0;  // ready for the next launch
    }
    __syncthreads();
    const int64_t first = group * group_size;
    for (int64_t i = threadIdx.x; i < group_size; i += kDecodeThreads) {
        y[first + i] = p.norm_weight[first + i] * (__ldcg(y + first + i) * group_scale);
    }
}

}  // namespace

Mamba2DecodeWorkspace::Mamba2DecodeWorkspace(int max_batch, int64_t n_head, int64_t head_dim, int64_t n_group)
    : max_batch_(max_batch) {
    const auto batch = static_cast<size_t>(max_batch);
    partial_sums_ = DeviceBuffer(batch * n_head * row_blocks(head_dim) * sizeof(float), "Mamba-2 decode norm sums");
    arrivals_ = DeviceBuffer(batch * n_group * sizeof(unsigned), "Mamba-2 decode norm counters");
    check(cudaMemset(arrivals_.get(), 0, arrivals_.bytes()), "clearing the Mamba-2 decode norm counters");
    // The memset runs on the legacy default stream, which the backend's non-blocking stream does not wait for.
    check(cudaDeviceSynchronize(), "clearing the Mamba-2 decode norm counters");
}

void launch_mamba2_decode(const Mamba2DecodeParams& p, const Mamba2DecodeWorkspace& workspace, cudaStream_t stream) {
    if (p.n_batch < 1 || p.n_batch > workspace.max_batch()) {
        fail("Mamba-2 decode: batch ", p.n_batch, " outside 1..", workspace.max_batch());
    }
    if (p.n_group < 1 || p.n_head % p.n_group != 0) {
        fail("Mamba-2 decode: ", p.n_head, " heads do not split into ", p.n_group, " groups");
    }
    if (p.n_head == 0 || p.head_dim == 0) return;
    const dim3 grid(static_cast<unsigned>(p.n_head * row_blocks(p.head_dim)), static_cast<unsigned>(p.n_batch));
    const size_t shared_bytes = 2 * static_cast<size_t>(p.d_state) * sizeof(float);
    mamba2_decode_kernel<<<grid, kDecodeThreads, shared_bytes, stream>>>(p, workspace.partial_sums(),
                                                                        workspace.arrivals());
    check_launch("mamba2_decode_kernel");
}

}  // namespace dendro::cuda
