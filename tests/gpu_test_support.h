// Pieces shared by the kernel-level CUDA tests; include only where DENDRO_HAVE_CUDA is defined.
#pragma once

#include <gtest/gtest.h>

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
        if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
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
