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

}  // namespace dendro
