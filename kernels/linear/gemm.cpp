#include "linear/gemm.h"

#include <algorithm>

#include "runtime/cublas_library.h"
#include "runtime/cuda_check.h"
#include "common/error.h"
#include "linear/gemm_operands.h"

namespace dendro::cuda {
namespace {

// cuBLAS's workspace: NVIDIA's guidance for Hopper is 32 MiB (smaller ones restrict its kernel choice).
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

bool capturing(cudaStream_t stream) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(stream, &status), "asking whether the GEMM stream is capturing");
    return status != cudaStreamCaptureStatusNone;
}

}  // namespace

Gemm::Gemm(cudaStream_t stream)
    : stream_(stream), workspace_(kCublasWorkspaceBytes, "the cuBLAS workspace") {
    check(cublas().create(&handle_), "creating the cuBLAS handle");
    try {
        check(cublas().set_stream(handle_, stream_), "binding cuBLAS to the backend's stream");
        // Exact fp32 products for F32 weights: no silent TF32.
        check(cublas().set_math_mode(handle_, CUBLAS_DEFAULT_MATH), "setting the cuBLAS math mode");
        check(cublas().set_workspace(handle_, workspace_.get(), workspace_.bytes()), "setting the cuBLAS workspace");
    } catch (...) {
        cublas().destroy(handle_);
        throw;
    }
}

Gemm::~Gemm() { cublas().destroy(handle_); }

void Gemm::reserve(int64_t max_rows, std::span<const DeviceMatrix> weights) {
    size_t activations = 0, expanded = 0;
    for (const DeviceMatrix& w : weights) {
        if (w.type != GgmlType::F32) activations = std::max(activations, static_cast<size_t>(max_rows * w.cols) * 2);
        if (w.type == GgmlType::Q8_0) expanded = std::max(expanded, static_cast<size_t>(w.rows * w.cols) * 2);
    }
    activation_scratch(activations);
    weight_scratch(expanded);
}

void* Gemm::activation_scratch(size_t bytes) {
    if (activations_.bytes() < bytes) {
        if (capturing(stream_)) fail("GEMM: ", bytes, " bytes of activation scratch needed inside a graph capture");
        check(cudaStreamSynchronize(stream_), "waiting for GEMMs before growing their activation scratch");
        activations_ = DeviceBuffer(bytes, "GEMM activation scratch");
    }
    return activations_.get();
}

void* Gemm::weight_scratch(size_t bytes) {
    if (expanded_weights_.bytes() < bytes) {
        if (capturing(stream_)) fail("GEMM: ", bytes, " bytes of Q8_0 expansion scratch needed inside a graph capture");
        check(cudaStreamSynchronize(stream_), "waiting for GEMMs before growing their weight scratch");
        expanded_weights_ = DeviceBuffer(bytes, "Q8_0 weights expanded to fp16 for prefill GEMMs");
    }
    return expanded_weights_.get();
}

void Gemm::run(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n, float* y, int64_t y_stride) {
    if (n == 0 || w.rows == 0) return;
    const float alpha = 1.0f, beta = 0.0f;
    // Column-major view: W (rows x cols, row-major) is a cols x rows matrix with leading dimension cols, so
    // Y^T (rows x n) = op(W)^T X^T with X^T cols x n (leading dimension x_stride).
    const void* a = w.data;
    const void* b = x;
    cudaDataType_t type = CUDA_R_32F;
    int64_t ldb = x_stride;
    switch (w.type) {
        case GgmlType::F32: break;
        case GgmlType::Q8_0: {
            void* expanded = weight_scratch(static_cast<size_t>(w.rows * w.cols) * 2);
            launch_dequantize_q8_0_to_f16(w, expanded, stream_);
            a = expanded;
            type = CUDA_R_16F;
            break;
        }
        case GgmlType::F16: type = CUDA_R_16F; break;
        case GgmlType::BF16: type = CUDA_R_16BF; break;
        default: fail("GEMM: unsupported weight type ", ggml_type_name(w.type));
    }
    if (type != CUDA_R_32F) {
        void* converted = activation_scratch(static_cast<size_t>(n * w.cols) * 2);
        launch_convert_activations(type == CUDA_R_16F ? GgmlType::F16 : GgmlType::BF16, x, x_stride, n, w.cols,
                                   converted, stream_);
        b = converted;
        ldb = w.cols;
    }
    check(cublas().gemm_ex(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows), static_cast<int>(n),
                       static_cast<int>(w.cols), &alpha, a, type, static_cast<int>(w.cols), b, type,
                       static_cast<int>(ldb), &beta, y, CUDA_R_32F, static_cast<int>(y_stride), CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
          concat("GEMM of ", w.rows, "x", w.cols, " ", ggml_type_name(w.type), " weights with ", n, " rows"));
}

}  // namespace dendro::cuda
