// The CPU-side logic of a GPU session: DENDRO_REQUIRE_GPU=1 turns the gpu tests' "no CUDA device" skip into
// a failure, and cuBLAS is looked for where DENDRO_CUBLAS_LIBRARY and CUDA_HOME say before the build's path.
#include <gtest/gtest.h>
#include <gtest/gtest-spi.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "../kernels/runtime/cublas_search.h"
#include "gpu_test_support.h"

namespace dendro {
namespace {

class RequireGpuSwitch : public ::testing::Test {
protected:
    void TearDown() override { unsetenv(test::kRequireGpuVariable); }
};

void require_absent_device() { DENDRO_REQUIRE_CUDA_DEVICE(false, "no CUDA device"); }

TEST_F(RequireGpuSwitch, MakesTheSkipAFailure) {
    setenv(test::kRequireGpuVariable, "1", 1);
    EXPECT_FATAL_FAILURE(require_absent_device(), "DENDRO_REQUIRE_GPU=1 forbids skipping");
}

TEST_F(RequireGpuSwitch, OnlyTheValueOneRequires) {
    EXPECT_FALSE(test::gpu_required());
    setenv(test::kRequireGpuVariable, "0", 1);
    EXPECT_FALSE(test::gpu_required());
    setenv(test::kRequireGpuVariable, "1", 1);
    EXPECT_TRUE(test::gpu_required());
}

TEST_F(RequireGpuSwitch, PresentDeviceNeitherSkipsNorFails) {
    setenv(test::kRequireGpuVariable, "1", 1);
    bool reached = false;
    [&] {
        DENDRO_REQUIRE_CUDA_DEVICE(true, "no CUDA device");
        reached = true;
    }();
    EXPECT_TRUE(reached);
}

using cuda::cublas_candidates;
using Paths = std::vector<std::string>;

TEST(CublasSearch, OverrideIsTheOnlyCandidate) {
    EXPECT_EQ(cublas_candidates("/opt/x/libcublas.so.13", "/usr/local/cuda", "libcublas.so.13", "/build/lib64"),
              Paths{"/opt/x/libcublas.so.13"});
}

TEST(CublasSearch, LoaderThenCudaHomeThenBuildDirectory) {
    EXPECT_EQ(cublas_candidates(nullptr, "/opt/cuda-13.0", "libcublas.so.13", "/build/lib64"),
              (Paths{"libcublas.so.13", "/opt/cuda-13.0/lib64/libcublas.so.13", "/build/lib64/libcublas.so.13"}));
}

TEST(CublasSearch, EmptyVariablesAreUnset) {
    EXPECT_EQ(cublas_candidates("", "", "libcublas.so.13", "/build/lib64"),
              (Paths{"libcublas.so.13", "/build/lib64/libcublas.so.13"}));
}

}  // namespace
}  // namespace dendro
