// A weight matrix resident on the device, in the element type it was loaded with. Q8_0 is repacked at upload
// into a plane of int8 quants (rows x cols, so that rows are 16-byte aligned for vector loads) and a plane of
// fp16 scales (rows x cols/32); the bytes are the same as ggml's interleaved 34-byte blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/ggml_types.h"

namespace dendro::cuda {

struct DeviceMatrix {
    GgmlType type = GgmlType::F32;  // F32, F16, BF16 or Q8_0
    int64_t rows = 0;               // outputs
    int64_t cols = 0;               // inputs (the row length)
    const void* data = nullptr;     // F32/F16/BF16 elements, or Q8_0 int8 quants; row-major
    const uint16_t* scales = nullptr;  // Q8_0 only: fp16 bits, one per 32 quants, row-major

    size_t element_bytes() const;  // bytes of one element of `data` (1 for Q8_0 quants)
    size_t data_bytes() const { return static_cast<size_t>(rows) * static_cast<size_t>(cols) * element_bytes(); }
    size_t scale_bytes() const;
    size_t bytes() const { return data_bytes() + scale_bytes(); }
};

}  // namespace dendro::cuda
