#include "cpu/read_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>

#include "cpu/matmul.h"
#include "cpu/thread_pool.h"

namespace dendro {
namespace {

// Independent sums, so that the loop is bound by loads rather than by one chain of additions; integers, so
// that the compiler vectorises it without reassociating floating point.
constexpr int kSums = 4;

uint64_t sum_words(const uint64_t* words, size_t n) {
    uint64_t sums[kSums] = {};
    size_t i = 0;
    for (; i + kSums <= n; i += kSums) {
        for (int s = 0; s < kSums; ++s) sums[s] += words[i + s];
    }
    for (; i < n; ++i) sums[0] += words[i];
    uint64_t total = 0;
    for (const uint64_t s : sums) total += s;
    return total;
}

}  // namespace

constexpr size_t kWords = kReadBandwidthBufferBytes / sizeof(uint64_t);

struct ReadBandwidthProbe::State {
    std::unique_ptr<uint64_t[]> buffer{new uint64_t[kWords]};  // uninitialised: each thread writes its share
    ThreadPool pool;
    explicit State(int n_threads) : pool(n_threads) {}
    std::pair<uint64_t*, size_t> share(int thread, int count) const {
        const cpu::Range words = cpu::thread_share(static_cast<int64_t>(kWords), thread, count, 1);
        return {buffer.get() + words.begin, static_cast<size_t>(words.end - words.begin)};
    }
};

ReadBandwidthProbe::ReadBandwidthProbe(int n_threads) : state_(std::make_unique<State>(n_threads)) {
    state_->pool.run([&](int thread, int count) {
        const auto [words, n] = state_->share(thread, count);
        std::fill(words, words + n, static_cast<uint64_t>(thread) + 1);
    });
}

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

ReadBandwidth ReadBandwidthProbe::measure() {
    std::atomic<int> team{0};
    std::atomic<uint64_t> checksum{0};  // an atomic sink: the reads cannot be optimised away
    ReadBandwidth best{0.0, kReadBandwidthBufferBytes, 0};
    for (int pass = 0; pass < kReadBandwidthPasses; ++pass) {
        const auto start = std::chrono::steady_clock::now();
        state_->pool.run([&](int thread, int count) {
            if (thread == 0) team = count;
            const auto [words, n] = state_->share(thread, count);
            checksum += sum_words(words, n);
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double gb_per_s = static_cast<double>(kReadBandwidthBufferBytes) / seconds / 1e9;
        if (gb_per_s > best.gb_per_s) best = {gb_per_s, kReadBandwidthBufferBytes, team.load()};
    }
    return best;
}

}  // namespace dendro
