#include "common/checked_int.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace dendro {
namespace {

constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

TEST(CheckedInt, AddAndMultiplyReportOverflow) {
    EXPECT_EQ(try_add<int64_t>(2, 3), 5);
    EXPECT_FALSE(try_add<int64_t>(kMax64, 1));
    EXPECT_FALSE(try_add<uint64_t>(kMaxU64, 1));
    EXPECT_EQ(try_mul<uint64_t>(1u << 20, 1u << 20), uint64_t{1} << 40);
    EXPECT_FALSE(try_mul<int64_t>(int64_t{1} << 32, int64_t{1} << 31));
    EXPECT_FALSE(try_mul<int64_t>(-1, std::numeric_limits<int64_t>::min()));
}

TEST(CheckedInt, ThrowingFormsNameTheirContext) {
    EXPECT_EQ(checked_mul<int64_t>(6, 7, "tensor x"), 42);
    try {
        (void)checked_mul<int64_t>(kMax64, 2, "tensor ", "blk.0.ssm_in.weight");
        FAIL() << "expected an overflow error";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "tensor blk.0.ssm_in.weight: 9223372036854775807 * 2 overflows");
    }
    EXPECT_THROW((void)checked_add<uint64_t>(kMaxU64, 1, "file"), Error);
}

TEST(CheckedInt, IndexBoundsDoNotComputeValuePlusOne) {
    EXPECT_TRUE(is_index_below(int64_t{0}, int64_t{1}));
    EXPECT_FALSE(is_index_below(int64_t{1}, int64_t{1}));
    EXPECT_FALSE(is_index_below(int64_t{-1}, uint64_t{10}));
    EXPECT_FALSE(is_index_below(kMax64, int64_t{50280}));  // the id that once overflowed id + 1
    EXPECT_FALSE(is_index_below(kMaxU64, int64_t{50280}));
    EXPECT_TRUE(in_closed_range(uint64_t{5}, int64_t{-1}, int64_t{5}));
    EXPECT_FALSE(in_closed_range(kMaxU64, int64_t{0}, kMax64));
    EXPECT_FALSE(in_closed_range(int64_t{-1}, uint32_t{0}, std::numeric_limits<uint32_t>::max()));
}

}  // namespace
}  // namespace dendro
