#include "bundled_model.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "common/error.h"

namespace dendro::cli {

const char* const kBundledModelFile = "dendro-shakespeare-2m.gguf";

namespace {

namespace fs = std::filesystem;

constexpr const char* kModelEnvVar = "DENDRO_MODEL";

// Directory of the running executable, empty when the system cannot tell.
fs::path executable_dir() {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::path() : exe.parent_path();
}

bool is_model_file(const fs::path& path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec);
}

}  // namespace

std::string default_model_path() {
    if (const char* from_env = std::getenv(kModelEnvVar); from_env != nullptr && *from_env != '\0') {
        if (!is_model_file(from_env)) {
            fail(kModelEnvVar, "=", from_env, ": no such model file");
        }
        return from_env;
    }
    std::vector<fs::path> candidates;
    if (const fs::path exe_dir = executable_dir(); !exe_dir.empty()) {
        candidates.push_back(exe_dir / ".." / "share" / "dendro" / "models" / kBundledModelFile);
        candidates.push_back(exe_dir / ".." / ".." / "models" / kBundledModelFile);
    }
    candidates.push_back(fs::path(DENDRO_SOURCE_MODELS_DIR) / kBundledModelFile);
    for (const fs::path& candidate : candidates) {
        if (is_model_file(candidate)) {
            return candidate.lexically_normal().string();
        }
    }
    std::string looked;
    for (const fs::path& candidate : candidates) {
        looked += concat(looked.empty() ? "" : ", ", candidate.lexically_normal().string());
    }
    fail("no model given (-m) and the bundled model ", kBundledModelFile, " was not found; looked at ",
         kModelEnvVar, " (unset), ", looked);
}

}  // namespace dendro::cli
