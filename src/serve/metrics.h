// The server's counters, gauges and latency histograms, rendered in the Prometheus text exposition format
// for GET /metrics. Updated from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace dendro::serve {

// A cumulative histogram with fixed bucket bounds in seconds.
class LatencyHistogram {
public:
    static constexpr std::array<double, 12> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    void observe(double seconds);
    // "# TYPE name histogram" and its _bucket, _sum and _count lines.
    std::string render(const std::string& name, const std::string& help) const;

private:
    mutable std::mutex mutex_;
    std::array<uint64_t, kBounds.size()> counts_{};  // per bucket, not cumulative
    uint64_t count_ = 0;
    double sum_ = 0.0;
};

struct ServeMetrics {
    std::atomic<uint64_t> requests{0};           // accepted into the queue
    std::atomic<uint64_t> requests_rejected{0};  // 4xx/5xx before the queue (bad input, queue full, auth)
    std::atomic<uint64_t> requests_finished{0};
    std::atomic<uint64_t> requests_cancelled{0};  // client gone, timeout or shutdown
    std::atomic<uint64_t> prompt_tokens{0};
    std::atomic<uint64_t> generated_tokens{0};
    std::atomic<uint64_t> cached_tokens{0};  // prompt tokens restored from the prefix cache
    std::atomic<uint64_t> cache_hits{0};
    std::atomic<uint64_t> cache_misses{0};
    std::atomic<int64_t> queue_depth{0};
    std::atomic<int64_t> active_sequences{0};
    LatencyHistogram time_to_first_token;
    LatencyHistogram inter_token_latency;
    LatencyHistogram request_duration;

    std::string render() const;
};

}  // namespace dendro::serve
