// One generation request between the HTTP thread that serves it and the scheduler that runs it: what to
// generate, and the pieces generated so far. The scheduler publishes pieces and finishes the job; the HTTP
// side takes them (as a stream or all at the end) and may cancel the job (its client went away).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "generate/logprobs.h"
#include "generate/sampler.h"

namespace dendro::serve {

struct JobSpec {
    std::string id;
    std::vector<int32_t> prompt;       // non-empty
    std::vector<int64_t> checkpoints;  // prompt lengths to keep a cache checkpoint at (message ends)
    SamplingParams sampling;
    int32_t max_tokens = 1;
    std::vector<std::string> stop;
    int32_t top_logprobs = -1;  // -1: none
    std::chrono::steady_clock::duration timeout = std::chrono::minutes(10);
};

struct GeneratedPiece {
    int32_t token = -1;  // -1: text released at the end of generation, not owned by one token
    std::string text;    // may be empty (an incomplete character, or text held back by a stop string)
    std::optional<PositionLogprobs> logprobs;
};

enum class FinishReason { Stop, Length, Cancelled, Timeout, Shutdown };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "cancelled", "timeout", "shutdown"

struct JobUsage {
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    int64_t cached_tokens = 0;
};

class Job {
public:
    explicit Job(JobSpec spec) : spec_(std::move(spec)), queued_at_(std::chrono::steady_clock::now()) {}
    const JobSpec& spec() const { return spec_; }
    std::chrono::steady_clock::time_point queued_at() const { return queued_at_; }

    // Moves the pieces published so far into `out`, waiting up to `wait` when there are none. Returns true
    // once the job is finished and every piece was taken.
    bool take(std::vector<GeneratedPiece>& out, std::chrono::milliseconds wait);
    void wait_finished();
    // Waits up to `wait`; true once the job is finished.
    bool wait_finished_for(std::chrono::milliseconds wait);
    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }

    // Valid once finished.
    FinishReason finish_reason() const;
    JobUsage usage() const;

    // The scheduler's side.
    void publish(GeneratedPiece piece);
    void finish(FinishReason reason, const JobUsage& usage);

private:
    const JobSpec spec_;
    const std::chrono::steady_clock::time_point queued_at_;
    std::atomic<bool> cancelled_{false};
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<GeneratedPiece> pieces_;
    bool finished_ = false;
    FinishReason reason_ = FinishReason::Stop;
    JobUsage usage_;
};

}  // namespace dendro::serve
