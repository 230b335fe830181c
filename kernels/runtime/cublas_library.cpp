#include "runtime/cublas_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "common/error.h"
#include "runtime/cublas_search.h"

namespace dendro::cuda {
namespace {

template <typename Function>
void resolve(void* handle, const char* symbol, Function& out) {
    void* address = dlsym(handle, symbol);
    if (address == nullptr) fail("cuBLAS: the loaded library has no ", symbol);
    out = reinterpret_cast<Function>(address);
}

CublasLibrary load() {
    const std::string name = concat("libcublas.so.", CUBLAS_VER_MAJOR);
    const std::vector<std::string> candidates = cublas_candidates(std::getenv(kCublasOverrideVariable),
                                                                  std::getenv("CUDA_HOME"), name, DENDRO_CUDA_LIBRARY_DIR);
    void* handle = nullptr;
    std::string errors;
    for (const std::string& path : candidates) {
        handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (handle != nullptr) break;
        const char* why = dlerror();
        errors += concat(errors.empty() ? "" : "; ", why != nullptr ? why : path.c_str());
    }
    if (handle == nullptr) {
        fail("cuBLAS could not be loaded (", errors, "); set ", kCublasOverrideVariable,
             " to the libcublas.so file or CUDA_HOME to the toolkit");
    }
    CublasLibrary lib{};
    resolve(handle, "cublasCreate_v2", lib.create);
    resolve(handle, "cublasDestroy_v2", lib.destroy);
    resolve(handle, "cublasSetStream_v2", lib.set_stream);
    resolve(handle, "cublasSetMathMode", lib.set_math_mode);
    resolve(handle, "cublasSetWorkspace_v2", lib.set_workspace);
    resolve(handle, "cublasGemmEx", lib.gemm_ex);
    resolve(handle, "cublasGetStatusName", lib.status_name);
    resolve(handle, "cublasGetStatusString", lib.status_string);
    return lib;  // the handle stays open for the life of the process
}

}  // namespace

const CublasLibrary& cublas() {
    static std::once_flag once;
    static CublasLibrary library;
    std::call_once(once, [] { library = load(); });
    return library;
}

}  // namespace dendro::cuda
