#include "cpu/read_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>

#include "cpu/matmul.h"
#include "cpu/simd.h"
#include "cpu/thread_pool.h"

namespace dendro {
namespace {

// Independent vector sums, so that the loop is bound by loads rather than by one chain of additions (the
// compiler left a loop of integer sums scalar: 8 loads a line).
constexpr int kSums = 2;
constexpr size_t kFloatsPerLine = cpu::kCacheLine / sizeof(float);
static_assert(kFloatsPerLine == kSums * cpu::kLanes);

float sum_floats(const float* values, size_t n, bool prefetch) {
    cpu::F32x8 sums[kSums];
    for (cpu::F32x8& sum : sums) sum = cpu::zero8();
    size_t i = 0;
    for (; i + kFloatsPerLine <= n; i += kFloatsPerLine) {
        if (prefetch) cpu::prefetch_line<cpu::kPrefetchToL2>(reinterpret_cast<uintptr_t>(values + i) + cpu::kPrefetchAheadBytes);
        for (int s = 0; s < kSums; ++s) sums[s] = cpu::add8(sums[s], cpu::load8(values + i + s * cpu::kLanes));
    }
    for (int s = 1; s < kSums; ++s) sums[0] = cpu::add8(sums[0], sums[s]);
    float total = cpu::hsum8(sums[0]);
    for (; i < n; ++i) total += values[i];
    return total;
}

}  // namespace

struct ReadBandwidthProbe::State {
    size_t n_values;
    std::unique_ptr<float[]> buffer;  // uninitialised: each thread writes its share
    ThreadPool pool;
    State(int n_threads, size_t bytes) : n_values(bytes / sizeof(float)), buffer(new float[n_values]), pool(n_threads) {}
    size_t bytes() const { return n_values * sizeof(float); }
    std::pair<float*, size_t> share(int thread, int count) const {
        const cpu::Range values = cpu::thread_share(static_cast<int64_t>(n_values), thread, count, 1);
        return {buffer.get() + values.begin, static_cast<size_t>(values.end - values.begin)};
    }
};

ReadBandwidthProbe::ReadBandwidthProbe(int n_threads, size_t working_set_bytes)
    : state_(std::make_unique<State>(
          n_threads, std::clamp(working_set_bytes, kReadBandwidthMinBufferBytes, kReadBandwidthMaxBufferBytes))) {
    state_->pool.run([&](int thread, int count) {
        const auto [values, n] = state_->share(thread, count);
        std::fill(values, values + n, 1.0f);
    });
}

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

ReadBandwidth ReadBandwidthProbe::measure() {
    std::atomic<int> team{0};
    std::atomic<float> checksum{0.0f};  // an atomic sink: the reads cannot be optimised away
    const size_t bytes = state_->bytes();
    ReadBandwidth best{0.0, bytes, 0};
    for (int pass = 0; pass < kReadBandwidthPasses; ++pass) {
        const bool prefetch = pass % 2 == 0;
        const auto start = std::chrono::steady_clock::now();
        state_->pool.run([&](int thread, int count) {
            if (thread == 0) team = count;
            const auto [values, n] = state_->share(thread, count);
            checksum.fetch_add(sum_floats(values, n, prefetch));
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double gb_per_s = static_cast<double>(bytes) / seconds / 1e9;
        if (gb_per_s > best.gb_per_s) best = {gb_per_s, bytes, team.load()};
    }
    return best;
}

}  // namespace dendro
