#include "runtime/cuda_check.h"

#include "runtime/cublas_library.h"
#include "common/error.h"

namespace dendro::cuda {

void check(cudaError_t status, const std::string& what) {
    if (status != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error so that later calls report their own failures
        fail("CUDA: ", what, ": ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
    }
}

void check(cublasStatus_t status, const std::string& what) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fail("cuBLAS: ", what, ": ", cublas().status_name(status), " (", cublas().status_string(status), ")");
    }
}

void check_launch(const char* kernel) {
    check(cudaGetLastError(), concat("launching ", kernel));
}

}  // namespace dendro::cuda
