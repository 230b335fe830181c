#include "serve/job.h"

namespace dendro::serve {

const char* finish_reason_name(FinishReason reason) {
    switch (reason) {
        case FinishReason::Stop:
            return "stop";
        case FinishReason::Length:
            return "length";
        case FinishReason::Cancelled:
            return "cancelled";
        case FinishReason::Timeout:
            return "timeout";
        case FinishReason::Shutdown:
            return "shutdown";
    }
    return "stop";
}

bool Job::take(std::vector<GeneratedPiece>& out, std::chrono::milliseconds wait) {
    std::unique_lock lock(mutex_);
    if (pieces_.empty() && !finished_) changed_.wait_for(lock, wait, [&] { return !pieces_.empty() || finished_; });
    while (!pieces_.empty()) {
        out.push_back(std::move(pieces_.front()));
        pieces_.pop_front();
    }
    return finished_;
}

void Job::wait_finished() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return finished_; });
}

bool Job::wait_finished_for(std::chrono::milliseconds wait) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, wait, [&] { return finished_; });
}

FinishReason Job::finish_reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

JobUsage Job::usage() const {
    std::lock_guard lock(mutex_);
    return usage_;
}

void Job::publish(GeneratedPiece piece) {
    {
        std::lock_guard lock(mutex_);
        pieces_.push_back(std::move(piece));
    }
    changed_.notify_all();
}

void Job::finish(FinishReason reason, const JobUsage& usage) {
    {
        std::lock_guard lock(mutex_);
        finished_ = true;
        reason_ = reason;
        usage_ = usage;
    }
    changed_.notify_all();
}

}  // namespace dendro::serve
