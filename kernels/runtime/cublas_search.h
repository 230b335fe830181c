// Where cuBLAS is looked for, in order; a pure function (no CUDA headers) so that the CPU suite tests it.
// An explicit DENDRO_CUBLAS_LIBRARY is the only candidate when set: a user who names a file wants that file,
// not a silent fallback to another cuBLAS. Otherwise: the soname through the loader's own search
// (LD_LIBRARY_PATH, ld.so.cache), then $CUDA_HOME's lib64 (the toolkit of the machine we run on), then the
// toolkit directory of the build machine.
#pragma once

#include <string>
#include <vector>

namespace dendro::cuda {

inline constexpr const char* kCublasOverrideVariable = "DENDRO_CUBLAS_LIBRARY";

// override_path and cuda_home are the environment's values, null or empty when unset.
inline std::vector<std::string> cublas_candidates(const char* override_path, const char* cuda_home,
                                                  const std::string& soname, const std::string& build_library_dir) {
    if (override_path != nullptr && *override_path != '\0') return {override_path};
    std::vector<std::string> out{soname};
    if (cuda_home != nullptr && *cuda_home != '\0') out.push_back(std::string(cuda_home) + "/lib64/" + soname);
    if (!build_library_dir.empty()) out.push_back(build_library_dir + "/" + soname);
    return out;
}

}  // namespace dendro::cuda
