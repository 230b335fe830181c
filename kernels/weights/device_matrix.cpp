#include "weights/device_matrix.h"

#include "common/error.h"

namespace dendro::cuda {

size_t DeviceMatrix::element_bytes() const {
    switch (type) {
        case GgmlType::F32: return 4;
        case GgmlType::F16:
        case GgmlType::BF16: return 2;
        case GgmlType::Q8_0: return 1;
        default: fail("CUDA backend: unsupported weight type ", ggml_type_name(type));
    }
}

size_t DeviceMatrix::scale_bytes() const {
    if (type != GgmlType::Q8_0) return 0;
    return static_cast<size_t>(rows) * static_cast<size_t>(cols / kQ8_0BlockSize) * sizeof(uint16_t);
}

}  // namespace dendro::cuda
