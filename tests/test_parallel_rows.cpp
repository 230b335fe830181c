// fill_rows_in_parallel: every row filled exactly once, in contiguous ranges, whatever the pool and tensor
// sizes; small tensors on the calling thread; an exception from a range reaches the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cpu/thread_pool.h"
#include "parallel_rows.h"

namespace dendro {
namespace {

struct Coverage {
    std::vector<int> times_filled;
    std::vector<std::thread::id> filled_by;
    int ranges = 0;
};

Coverage fill_all(ThreadPool& pool, int64_t n_rows, int64_t row_length) {
    Coverage c;
    c.times_filled.assign(static_cast<size_t>(n_rows), 0);
    c.filled_by.resize(static_cast<size_t>(n_rows));
    std::mutex mutex;
    fill_rows_in_parallel(pool, n_rows, row_length, [&](int64_t begin, int64_t end) {
        ASSERT_LT(begin, end);
        const std::lock_guard lock(mutex);
        ++c.ranges;
        for (int64_t r = begin; r < end; ++r) {
            ++c.times_filled[static_cast<size_t>(r)];
            c.filled_by[static_cast<size_t>(r)] = std::this_thread::get_id();
        }
    });
    return c;
}

TEST(ParallelRows, EveryRowOnceInOneRangePerThread) {
    for (const int n_threads : {1, 2, 3}) {
        ThreadPool pool(n_threads);
        for (const int64_t n_rows : {int64_t{1}, int64_t{2}, int64_t{5}, int64_t{1000}}) {
            const int64_t row_length = kParallelRowElements;  // large enough to be shared at any row count
            const Coverage c = fill_all(pool, n_rows, row_length);
            EXPECT_EQ(c.times_filled, std::vector<int>(static_cast<size_t>(n_rows), 1)) << n_threads << " threads";
            EXPECT_LE(c.ranges, std::min<int64_t>(n_threads, n_rows));
        }
    }
}

TEST(ParallelRows, SmallTensorsStayOnTheCallingThread) {
    ThreadPool pool(2);
    const Coverage c = fill_all(pool, 4, kParallelRowElements / 8);
    EXPECT_EQ(c.ranges, 1);
    for (const std::thread::id id : c.filled_by) EXPECT_EQ(id, std::this_thread::get_id());
}

TEST(ParallelRows, AnExceptionReachesTheCaller) {
    ThreadPool pool(2);
    constexpr int64_t kRows = 8;
    const auto fail_last_range = [](int64_t, int64_t end) {  // on whichever thread the last rows land
        if (end == kRows) throw std::runtime_error("row range failed");
    };
    EXPECT_THROW(fill_rows_in_parallel(pool, kRows, kParallelRowElements, fail_last_range), std::runtime_error);
}

}  // namespace
}  // namespace dendro
