#include "cpu/adaptive_team_size.h"

#include <algorithm>

namespace dendro {

AdaptiveTeamSize::AdaptiveTeamSize(int max_threads) : max_(std::max(max_threads, 1)), size_(max_) {}

int AdaptiveTeamSize::next(Clock::time_point now) {
    running_ = size_ < max_ && now >= next_probe_ ? size_ + 1 : size_;
    return running_;
}

void AdaptiveTeamSize::finished(bool stalled, Clock::time_point now) {
    const bool probing = running_ > size_;
    if (!stalled) {
        size_ = running_;
        if (probing) probe_interval_ = kFirstProbeInterval;
    } else {
        if (probing) probe_interval_ = std::min(2 * probe_interval_, kLongestProbeInterval);
        size_ = std::max(1, running_ - 1);
    }
    if (stalled || probing) next_probe_ = now + probe_interval_;
}

void StallWindow::start(Clock::time_point now, int team) {
    open_ = true;
    start_ = now;
    team_ = team;
    total_ = {};
}

std::optional<bool> StallWindow::add(const TaskWaits& task, Clock::time_point now) {
    total_.thread_ns += task.thread_ns;
    total_.sleep_wait_ns += task.sleep_wait_ns;
    total_.preempted = total_.preempted || task.preempted;
    // Waits that are already more than the share of a whole window's thread time stall it, however the
    // window's remaining tasks go: a busy machine is found after one task, as judging task by task did.
    const double window_thread_ns = team_ * std::chrono::duration<double, std::nano>(kWindow).count();
    const bool stalled_already = total_.preempted && total_.sleep_wait_ns > kStalledWaitShare * window_thread_ns;
    if (team_ > 1 && now - start_ < kWindow && !stalled_already) return std::nullopt;
    open_ = false;
    return team_ > 1 && total_.preempted && total_.sleep_wait_ns > kStalledWaitShare * total_.thread_ns;
}

}  // namespace dendro
