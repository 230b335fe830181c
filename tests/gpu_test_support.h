// Pieces shared by the CUDA tests. The skip-or-fail switch below builds everywhere; the rest only where
// DENDRO_HAVE_CUDA is defined.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace dendro::test {

// DENDRO_REQUIRE_GPU=1 (tools/gpu_session.sh sets it) turns every "no GPU, skipping" into a failure, so that
// a GPU run cannot pass by skipping.
inline constexpr const char* kRequireGpuVariable = "DENDRO_REQUIRE_GPU";

inline bool gpu_required() {
    const char* value = std::getenv(kRequireGpuVariable);
    return value != nullptr && std::strcmp(value, "1") == 0;
}

}  // namespace dendro::test

// At the top of a test or SetUp(): skips (or with DENDRO_REQUIRE_GPU=1 fails) unless `available`.
#define DENDRO_REQUIRE_CUDA_DEVICE(available, why)                                                          \
    do {                                                                                                  \
        if (!(available)) {                                                                               \
            if (::dendro::test::gpu_required()) GTEST_FAIL() << why << " and DENDRO_REQUIRE_GPU=1 forbids skipping"; \
            GTEST_SKIP() << why;                                                                          \
        }                                                                                                 \
    } while (0)

#ifdef DENDRO_HAVE_CUDA

#include <cmath>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/backend.h"
#include "cuda_check.h"

namespace dendro::cuda {

// A fixture that skips without a CUDA device and gives each test its own stream. Base is ::testing::Test
// or a ::testing::TestWithParam<T>.
template <typename Base = ::testing::Test>
class CudaStreamTest : public Base {
protected:
    void SetUp() override {
        DENDRO_REQUIRE_CUDA_DEVICE(cuda_available(), "no CUDA device");
        check(cudaStreamCreate(&stream_), "creating a test stream");
    }
    void TearDown() override {
        if (stream_ != nullptr) cudaStreamDestroy(stream_);
    }
    cudaStream_t stream_ = nullptr;
};

// Every element within `tolerance` relative to (1 + |expected|), naming the first that is not.
inline void expect_all_near(const std::vector<float>& actual, const std::vector<float>& expected, float tolerance,
                            const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    for (size_t i = 0; i < actual.size(); ++i) {
        ASSERT_NEAR(actual[i], expected[i], tolerance * (1.0f + std::fabs(expected[i]))) << what << " element " << i;
    }
}

}  // namespace dendro::cuda

#endif  // DENDRO_HAVE_CUDA
