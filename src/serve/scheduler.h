// Continuous batching: one thread owns the backend and its sequence slots. Every step it
//   - admits queued jobs into free slots (restoring the longest cached prefix of the prompt),
//   - finishes jobs that were cancelled, timed out or outlived a shutdown's grace (the slot is free again),
//   - prefills one chunk of one slot's prompt (round robin), so that a long prompt never stalls the others
//     for more than a chunk,
//   - decodes one token for every slot that is generating, in one batched backend call.
// Sampling, text streaming and logprobs are the library's (Sampler, StreamDecoder, position_logprobs), so a
// greedy request gives the tokens of `dendro run --temp 0`. The prefix cache gets a checkpoint at each
// message end, every checkpoint_every tokens and the end of the prompt, and, when a job ends, the state
// after its generated tokens (the next turn of a conversation resumes there).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "serve/job.h"
#include "serve/metrics.h"
#include "serve/ram_prefix_tier.h"
#include "tokenizer/tokenizer.h"

namespace dendro::serve {

struct SchedulerOptions {
    size_t max_queue = 16;           // jobs waiting when every slot is busy; more are refused (HTTP 503)
    int64_t prefill_chunk = 256;     // prompt tokens per prefill step
    int64_t checkpoint_every = 512;  // 0: checkpoints only at message ends and the prompt's end
};

using LogSink = std::function<void(const std::string& line)>;

class Scheduler {
public:
    // One slot per backend sequence. `cache` may be null. Starts the scheduler thread.
    Scheduler(Backend& backend, const Tokenizer& tokenizer, RamPrefixTier* cache, ServeMetrics& metrics,
              const SchedulerOptions& options, LogSink log);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Queues a job. Throws ApiError 503 when the queue is full or the server is shutting down.
    std::shared_ptr<Job> submit(JobSpec spec);

    // Takes no more jobs; running and queued ones go on until `grace` has passed, then are finished with
    // FinishReason::Shutdown. Returns when every job is finished and its state stored.
    void shutdown(std::chrono::steady_clock::duration grace);

private:
    struct Slot;

    void loop();
    void admit(int seq, std::shared_ptr<Job> job);
    void expire_jobs();
    void prefill_step();
    void decode_step();
    // Samples from the slot's logits, publishes the token and either finishes the job or leaves the token
    // pending for the next decode step.
    void consume_logits(int seq);
    void finish(int seq, FinishReason reason);
    void store_state(int seq, bool end_of_prompt);
    bool any_active() const;

    Backend& backend_;
    const Tokenizer& tokenizer_;
    RamPrefixTier* cache_;
    ServeMetrics& metrics_;
    const SchedulerOptions options_;
    LogSink log_;
    const int64_t n_vocab_;

    std::vector<std::unique_ptr<Slot>> slots_;  // touched only by the scheduler thread
    size_t next_prefill_ = 0;
    std::vector<int> batch_seqs_;
    std::vector<int32_t> batch_tokens_;
    std::vector<float> batch_logits_;

    mutable std::mutex mutex_;  // guards the queue, busy_slots_ and the shutdown state
    std::condition_variable wake_;
    std::deque<std::shared_ptr<Job>> queue_;
    size_t busy_slots_ = 0;  // slots holding a job (admitted, not finished)
    bool stopping_ = false;
    std::chrono::steady_clock::time_point grace_end_;
    std::thread thread_;
};

}  // namespace dendro::serve
