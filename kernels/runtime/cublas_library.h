// cuBLAS, loaded with dlopen the first time a backend needs a GEMM. Linking it would make every start of
// every Dendro program (CPU-only runs, `dendro --version`) map and initialise the ~570 MB cuBLAS/cuBLASLt
// libraries, about a second on the build machines; loading on demand also lets a CUDA build run where the
// libraries are absent, with an error only when the CUDA backend is asked for.
#pragma once

#include <cublas_v2.h>

namespace dendro::cuda {

struct CublasLibrary {
    decltype(&::cublasCreate_v2) create;
    decltype(&::cublasDestroy_v2) destroy;
    decltype(&::cublasSetStream_v2) set_stream;
    decltype(&::cublasSetMathMode) set_math_mode;
    decltype(&::cublasSetWorkspace_v2) set_workspace;
    // Spelled out: C++ sees an overloaded cublasGemmEx (the header adds a cublasDataType_t variant).
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m, int n, int k,
                              const void* alpha, const void* a, cudaDataType a_type, int lda, const void* b,
                              cudaDataType b_type, int ldb, const void* beta, void* c, cudaDataType c_type, int ldc,
                              cublasComputeType_t compute_type, cublasGemmAlgo_t algo);
    decltype(&::cublasGetStatusName) status_name;
    decltype(&::cublasGetStatusString) status_string;
};

// The loaded library; throws dendro::Error naming the files tried when it cannot be loaded.
const CublasLibrary& cublas();

}  // namespace dendro::cuda
