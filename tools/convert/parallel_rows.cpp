#include "parallel_rows.h"

#include "cpu/matmul.h"
#include "cpu/thread_pool.h"

namespace dendro {

void fill_rows_in_parallel(ThreadPool& pool, int64_t n_rows, int64_t row_length,
                           const std::function<void(int64_t row_begin, int64_t row_end)>& fill) {
    if (n_rows <= 0) return;
    if (row_length * n_rows < kParallelRowElements || pool.size() == 1) {
        fill(0, n_rows);
        return;
    }
    pool.run([&](int thread, int n_threads) {
        const cpu::Range rows = cpu::thread_share(n_rows, thread, n_threads, 1);
        if (rows.begin < rows.end) fill(rows.begin, rows.end);
    });
}

}  // namespace dendro
