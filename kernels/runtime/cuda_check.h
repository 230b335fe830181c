// Every CUDA runtime and cuBLAS return code is checked: a failure becomes a dendro::Error naming what was
// being done ("allocating ssm states: out of memory").
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

namespace dendro::cuda {

void check(cudaError_t status, const std::string& what);
void check(cublasStatus_t status, const std::string& what);
// Checks that the kernel launches just issued were accepted (bad configuration, no device code for the GPU).
void check_launch(const char* kernel);

}  // namespace dendro::cuda
