// How many of a thread pool's threads the next task should use. On an idle machine: all of them. When
// another process takes a core, a thread of the team is descheduled for a whole time slice now and then, and
// every barrier of the pass waits for it (the pool reports such waits as stalls); a smaller team then
// finishes sooner, so the team shrinks by one after each stalled task. Contention comes and goes, so a larger
// team is tried again after a probe interval, which doubles after each probe that stalls (an idle machine is
// found again quickly; a busy one costs one stall per few seconds).
#pragma once

#include <chrono>

namespace dendro {

class AdaptiveTeamSize {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr Clock::duration kFirstProbeInterval = std::chrono::milliseconds(50);
    static constexpr Clock::duration kLongestProbeInterval = std::chrono::seconds(2);

    explicit AdaptiveTeamSize(int max_threads);

    int max_threads() const { return max_; }
    // The team size for a task starting at `now` (1..max_threads): the current size, one more when a probe
    // is due.
    int next(Clock::time_point now);
    // How the task that next() sized went: whether any thread of it stalled.
    void finished(bool stalled, Clock::time_point now);

private:
    int max_;
    int size_;          // the size that ran without stalls most recently
    int running_ = 0;   // the size handed out by next()
    Clock::duration probe_interval_ = kFirstProbeInterval;
    Clock::time_point next_probe_{};
};

}  // namespace dendro
