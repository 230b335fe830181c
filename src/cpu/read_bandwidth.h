// The machine's memory read bandwidth as the CPU backend's threads see it: what decode, which streams every
// weight once per token, can at best reach. dendro bench prints it next to the weight bandwidth achieved.
#pragma once

#include <cstddef>
#include <memory>

namespace dendro {

// A buffer well beyond the last-level cache of the CPUs this runs on (tens of MiB), so that the passes read
// DRAM, not cache.
inline constexpr size_t kReadBandwidthBufferBytes = size_t{256} << 20;
inline constexpr int kReadBandwidthPasses = 5;

struct ReadBandwidth {
    double gb_per_s = 0.0;  // the best pass: 1e9 bytes per second
    size_t buffer_bytes = 0;
    int threads = 0;        // the team that ran the passes
};

// Reads a kReadBandwidthBufferBytes buffer kReadBandwidthPasses times per measure() with n_threads threads
// (each its own contiguous share, first touched by it), as decode shares a matrix's rows. The buffer and
// threads are set up once (about a tenth of a second), so that measures can be interleaved with what they
// are compared with: on a shared VM the bandwidth moves by 2x within minutes.
class ReadBandwidthProbe {
public:
    explicit ReadBandwidthProbe(int n_threads);
    ~ReadBandwidthProbe();
    ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
    ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;
    ReadBandwidth measure();

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace dendro
