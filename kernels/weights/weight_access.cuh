// Device-side reads of DeviceMatrix elements, shared by the kernels that consume weights: one element at a
// time (any row length), and 16-byte vectors of a row (rows whose byte length is a multiple of 16).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "weights/device_matrix.h"

namespace dendro::cuda {

inline constexpr int kWarpSize = 32;
inline constexpr int kVectorBytes = 16;

__device__ __forceinline__ float half_bits_to_float(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
}
__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) {
    return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// Element (row, col) of a matrix of element type T, as fp32.
template <GgmlType T>
__device__ __forceinline__ float weight_at(const DeviceMatrix& w, int64_t row, int64_t col) {
    const int64_t index = row * w.cols + col;
    if constexpr (T == GgmlType::F32) {
        return __ldg(static_cast<const float*>(w.data) + index);
    } else if constexpr (T == GgmlType::F16) {
        return half_bits_to_float(__ldg(static_cast<const unsigned short*>(w.data) + index));
    } else if constexpr (T == GgmlType::BF16) {
        return bf16_bits_to_float(__ldg(static_cast<const unsigned short*>(w.data) + index));
    } else {
        static_assert(T == GgmlType::Q8_0);
        const int64_t block = row * (w.cols / kQ8_0BlockSize) + col / kQ8_0BlockSize;
        const float scale = half_bits_to_float(__ldg(w.scales + block));
        return scale * static_cast<float>(__ldg(static_cast<const signed char*>(w.data) + index));
    }
}

// Runtime-typed element read for kernels that touch a weight once per output (embedding rows).
__device__ __forceinline__ float weight_at(const DeviceMatrix& w, int64_t row, int64_t col) {
    switch (w.type) {
        case GgmlType::F16: return weight_at<GgmlType::F16>(w, row, col);
        case GgmlType::BF16: return weight_at<GgmlType::BF16>(w, row, col);
        case GgmlType::Q8_0: return weight_at<GgmlType::Q8_0>(w, row, col);
        default: return weight_at<GgmlType::F32>(w, row, col);
    }
}

// Elements per 16-byte vector of a row.
template <GgmlType T>
inline constexpr int kVectorElements = T == GgmlType::F32 ? 4 : (T == GgmlType::Q8_0 ? 16 : 8);

// Reads the vector-th 16-byte vector of `row` and converts it to fp32.
template <GgmlType T>
__device__ __forceinline__ void load_weight_vector(const DeviceMatrix& w, int64_t row, int64_t vector,
                                                   float (&out)[kVectorElements<T>]) {
    const uint8_t* row_bytes = static_cast<const uint8_t*>(w.data) + row * w.cols * static_cast<int64_t>(
        T == GgmlType::F32 ? 4 : (T == GgmlType::Q8_0 ? 1 : 2));
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row_bytes) + vector);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
    if constexpr (T == GgmlType::F32) {
#pragma unroll
        for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(words[i]);
    } else if constexpr (T == GgmlType::F16) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 pair = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
            out[2 * i] = pair.x;
            out[2 * i + 1] = pair.y;
        }
    } else if constexpr (T == GgmlType::BF16) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            out[2 * i] = __uint_as_float(words[i] << 16);
            out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
        }
    } else {
        static_assert(T == GgmlType::Q8_0);
        // 16 quants lie inside one 32-quant block: one scale.
        const int64_t first = vector * kVectorElements<T>;
        const int64_t block = row * (w.cols / kQ8_0BlockSize) + first / kQ8_0BlockSize;
        const float scale = half_bits_to_float(__ldg(w.scales + block));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                out[4 * i + j] = scale * static_cast<float>(static_cast<int8_t>((words[i] >> (8 * j)) & 0xffu));
            }
        }
    }
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

// Sum over each aligned group of kLanes consecutive lanes (a power of two dividing the warp); every lane of
// the warp must call it, each gets its group's sum.
template <int kLanes>
__device__ __forceinline__ float group_sum(float value) {
    static_assert(kLanes > 0 && kLanes <= kWarpSize && (kLanes & (kLanes - 1)) == 0);
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

// Whether a matrix's rows can be read as 16-byte vectors (row byte length and base address multiples of 16).
inline bool rows_are_vectors(const DeviceMatrix& w) {
    return (w.cols * static_cast<int64_t>(w.element_bytes())) % kVectorBytes == 0 &&
           reinterpret_cast<uintptr_t>(w.data) % kVectorBytes == 0;
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// torch.nn.functional.softplus with its default threshold: linear above 20.
inline constexpr float kSoftplusThreshold = 20.0f;
__device__ __forceinline__ float softplus(float x) { return x > kSoftplusThreshold ? x : log1pf(expf(x)); }

}  // namespace dendro::cuda
