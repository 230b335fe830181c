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

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/backend.h"
#include "common/error.h"
#include "runtime/cuda_check.h"
#include "format/ggml_types.h"

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

// ---- Backend comparisons shared by the end-to-end CUDA tests (CPU backend = the numerical reference) ----

namespace dendro::test {

// Largest |difference| of logits allowed, relative to the largest |logit| (at least 1): fp32 paths differ from
// the CPU only in summation order; 16-bit weights multiply 16-bit-rounded activations in prefill GEMMs.
inline float logits_tolerance(GgmlType type) {
    switch (type) {
        case GgmlType::F32: return 1e-3f;
        case GgmlType::BF16: return 5e-2f;
        default: return 2e-2f;
    }
}

inline std::vector<int32_t> random_tokens(size_t n, int64_t n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = dist(rng);
    return tokens;
}

inline int32_t argmax(std::span<const float> logits) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

inline void expect_logits_near(std::span<const float> actual, std::span<const float> expected, float tolerance,
                               const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    float scale = 1.0f;
    for (float e : expected) scale = std::max(scale, std::fabs(e));
    for (size_t i = 0; i < actual.size(); ++i) {
        ASSERT_NEAR(actual[i], expected[i], tolerance * scale) << what << " logit " << i;
    }
}

inline void expect_states_near(const SequenceState& a, const SequenceState& b, float tolerance,
                               const std::string& what) {
    ASSERT_EQ(a.conv.size(), b.conv.size()) << what;
    ASSERT_EQ(a.ssm.size(), b.ssm.size()) << what;
    for (size_t i = 0; i < a.conv.size(); ++i) {
        ASSERT_NEAR(a.conv[i], b.conv[i], tolerance * (1.0f + std::fabs(b.conv[i]))) << what << " conv " << i;
    }
    for (size_t i = 0; i < a.ssm.size(); ++i) {
        ASSERT_NEAR(a.ssm[i], b.ssm[i], tolerance * (1.0f + std::fabs(b.ssm[i]))) << what << " ssm " << i;
    }
}

// Whether the CPU's best logit beats its runner-up by more than the logits tolerance (a clear choice that the
// CUDA backend must make too).
inline bool clear_winner(std::span<const float> logits, float tolerance) {
    std::vector<float> sorted(logits.begin(), logits.end());
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    float scale = 1.0f;
    for (float l : logits) scale = std::max(scale, std::fabs(l));
    return sorted[0] - sorted[1] > 2.0f * tolerance * scale;
}

}  // namespace dendro::test

#endif  // DENDRO_HAVE_CUDA
