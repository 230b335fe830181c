#include "linear/projection.h"

#include "linear/gemm_operands.h"
#include "linear/gemv.h"

namespace dendro::cuda {

void project(const DeviceMatrix& w, const float* bias, const float* x, int64_t x_stride, int64_t n, float* y,
             int64_t y_stride, Gemm& gemm, cudaStream_t stream) {
    if (n <= 0) return;
    if (n <= kMaxGemvBatch) {
        launch_gemv(w, bias, x, x_stride, static_cast<int>(n), y, y_stride, stream);
        return;
    }
    gemm.run(w, x, x_stride, n, y, y_stride);
    if (bias != nullptr) launch_add_bias(y, y_stride, n, w.rows, bias, stream);
}

}  // namespace dendro::cuda
