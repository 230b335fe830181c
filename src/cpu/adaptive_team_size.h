// How many of a thread pool's threads the next task should use. On an idle machine: all of them. When
// another process takes a core, a thread of the team is descheduled for a whole time slice now and then, and
// every barrier of the pass waits for it (the pool reports such waits as stalls, judged over a window of
// tasks: StallWindow); a smaller team then finishes sooner, so the team shrinks by one after each stalled
// window. Contention comes and goes, so a larger team is tried again after a probe interval, which doubles
// after each probe that stalls (an idle machine is found again quickly; a busy one costs one stall per few
// seconds).
#pragma once

#include <chrono>
#include <optional>

namespace dendro {

// How the threads of one task waited for each other.
struct TaskWaits {
    double thread_ns = 0.0;      // the team's threads times the task's duration
    double sleep_wait_ns = 0.0;  // the waits that slept (gave up their core)
    bool preempted = false;      // a thread of the team was taken off its core by the scheduler
};

// Judges consecutive tasks together, over a window of at least kWindow: the window is stalled when its
// threads spent more than kStalledWaitShare of their time asleep waiting for each other and one of them was
// preempted. Judged task by task, a thread preempted for a few milliseconds now and then (a kernel thread,
// the hypervisor) on an idle 2-vCPU VM stalled one 130m decode step in ten and put a third of the steps on
// one thread (f16 decode ~6 % slower); with another busy process the waits are half of every window or
// more. A decode step takes a tenth of a millisecond for a small model, about ten for a 130m one.
class StallWindow {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr Clock::duration kWindow = std::chrono::milliseconds(20);
    static constexpr double kStalledWaitShare = 0.25;

    bool open() const { return open_; }
    // Starts a window at `now` for tasks run by `team` threads.
    void start(Clock::time_point now, int team);
    int team() const { return team_; }
    // Adds a task that ended at `now`; once the window has lasted kWindow (or the team is one thread, which
    // never waits, or its waits already exceed the stalled share of a whole window) it closes and the
    // verdict is returned: whether it stalled.
    std::optional<bool> add(const TaskWaits& task, Clock::time_point now);

private:
    bool open_ = false;
    Clock::time_point start_{};
    int team_ = 1;
    TaskWaits total_;
};

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
    // How the tasks run on the size next() gave went: whether they stalled (a StallWindow's verdict).
    void finished(bool stalled, Clock::time_point now);

private:
    int max_;
    int size_;          // the size that ran without stalls most recently
    int running_ = 0;   // the size handed out by next()
    Clock::duration probe_interval_ = kFirstProbeInterval;
    Clock::time_point next_probe_{};
};

}  // namespace dendro
