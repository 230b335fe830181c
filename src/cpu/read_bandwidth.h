// The machine's memory read bandwidth as the CPU backend's threads see it: what decode, which streams every
// weight once per token, can at best reach. dendro bench prints it next to the weight bandwidth achieved.
#pragma once

#include <cstddef>
#include <memory>

namespace dendro {

// The probe's buffer is the size of what a decode step reads (weights and states), so that it meets the
// caches as decode does: a 130m model's 85 MB of Q4_K weights partly stay in a large last-level cache (an
// Intel Xeon VM read 84 MB buffers at 36-48 GB/s and 518 MB at 29-31), where a fixed 256 MB buffer read
// DRAM only and put Q4_K decode at 133 % of it. Within these bounds: tiny models would time a pass of
// microseconds, and past a gigabyte every cache is outgrown.
inline constexpr size_t kReadBandwidthMinBufferBytes = size_t{16} << 20;
inline constexpr size_t kReadBandwidthMaxBufferBytes = size_t{1} << 30;
// Half the passes ask for the lines ahead as the matrix tiles do, half leave it to the hardware prefetcher;
// the best pass counts (the first is the faster from cache, the second from DRAM on some machines).
inline constexpr int kReadBandwidthPasses = 6;

struct ReadBandwidth {
    double gb_per_s = 0.0;  // the best pass: 1e9 bytes per second
    size_t buffer_bytes = 0;
    int threads = 0;        // the team that ran the passes
};

// Reads a buffer of working_set_bytes (within the bounds above) kReadBandwidthPasses times per measure()
// with n_threads threads (each its own contiguous share, first touched by it), as decode shares a matrix's
// rows. The buffer and threads are set up once (about a tenth of a second), so that measures can be
// interleaved with what they are compared with: on a shared VM the bandwidth moves by 2x within minutes.
class ReadBandwidthProbe {
public:
    ReadBandwidthProbe(int n_threads, size_t working_set_bytes);
    ~ReadBandwidthProbe();
    ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
    ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;
    ReadBandwidth measure();

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace dendro
