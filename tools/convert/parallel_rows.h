// The rows of a tensor being written (converted, quantized or generated) shared among a pool's threads:
// quantizing a k-quant is ~100x slower than reading the values, so a 7B model's conversion is bound by it.
#pragma once

#include <cstdint>
#include <functional>

namespace dendro {

class ThreadPool;

// Calls fill(row_begin, row_end) on contiguous ranges that cover [0, n_rows), one range per thread of
// `pool`; a tensor of fewer than kParallelRowElements elements is filled on the calling thread in one range
// (waking the others would cost more). Each call must allocate its own scratch. An exception a call
// throws is rethrown here.
inline constexpr int64_t kParallelRowElements = int64_t{1} << 20;
void fill_rows_in_parallel(ThreadPool& pool, int64_t n_rows, int64_t row_length,
                           const std::function<void(int64_t row_begin, int64_t row_end)>& fill);

}  // namespace dendro
