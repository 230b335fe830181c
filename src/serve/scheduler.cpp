#include "serve/scheduler.h"

#include <algorithm>

#include "cache/state_snapshot.h"
#include "common/error.h"
#include "serve/api_error.h"
#include "serve/stop_strings.h"

namespace dendro::serve {
namespace {

using Clock = std::chrono::steady_clock;
// How long an idle scheduler sleeps before it looks at its queue again without being woken.
constexpr auto kIdleWait = std::chrono::milliseconds(100);

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// The options as given, checked, with the checkpoint interval rounded as dendro run rounds it (so that
// resuming from an interval checkpoint is exact for every architecture).
SchedulerOptions checked_options(const Backend& backend, SchedulerOptions options) {
    if (options.prefill_chunk < 1) fail("--prefill-chunk must be >= 1, got ", options.prefill_chunk);
    if (options.checkpoint_every < 0) fail("--cache-every must be >= 0, got ", options.checkpoint_every);
    options.checkpoint_every = exact_checkpoint_interval(backend, options.checkpoint_every);
    return options;
}

}  // namespace

struct Scheduler::Slot {
    enum class Phase { Prefill, Decode };

    std::shared_ptr<Job> job;
    Phase phase = Phase::Prefill;
    std::vector<int32_t> consumed;  // the tokens the slot's state has consumed
    std::vector<float> logits;      // the logits after the last of them
    int64_t stored_length = -1;     // length of `consumed` last stored in the cache
    int64_t cached_tokens = 0;
    std::optional<Sampler> sampler;
    std::optional<StreamDecoder> stream;
    std::optional<StopStringFilter> stop;
    int32_t pending = -1;  // sampled, not yet consumed
    int64_t generated = 0;
    Clock::time_point deadline, last_token_at;
};

Scheduler::Scheduler(Backend& backend, const Tokenizer& tokenizer, RamPrefixTier* cache, ServeMetrics& metrics,
                     const SchedulerOptions& options, LogSink log)
    : backend_(backend), tokenizer_(tokenizer), cache_(cache), metrics_(metrics),
      options_(checked_options(backend, options)), log_(std::move(log)), n_vocab_(backend.hparams().n_vocab) {
    for (int i = 0; i < backend.n_seq_max(); ++i) slots_.push_back(std::make_unique<Slot>());
    thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(Clock::duration::zero()); }

std::shared_ptr<Job> Scheduler::submit(JobSpec spec) {
    if (spec.prompt.empty()) fail("scheduler: a job needs a prompt");
    auto job = std::make_shared<Job>(std::move(spec));
    {
        std::lock_guard lock(mutex_);
        if (stopping_) {
            throw ApiError(kHttpServiceUnavailable, "server_error", "the server is shutting down", "", "shutting_down");
        }
        // Room for the queue's bound beyond the slots that are free now.
        if (queue_.size() + busy_slots_ >= slots_.size() + options_.max_queue) {
            throw ApiError(kHttpServiceUnavailable, "server_error",
                           concat("the server is busy: ", queue_.size(), " requests are waiting already"), "",
                           "queue_full");
        }
        queue_.push_back(job);
        metrics_.queue_depth = static_cast<int64_t>(queue_.size());
    }
    ++metrics_.requests;
    metrics_.prompt_tokens += job->spec().prompt.size();
    wake_.notify_all();
    return job;
}

void Scheduler::shutdown(Clock::duration grace) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            stopping_ = true;
            grace_end_ = Clock::now() + grace;
        } else {
            grace_end_ = std::min(grace_end_, Clock::now() + grace);
        }
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool Scheduler::any_active() const {
    return std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->job != nullptr; });
}

void Scheduler::loop() {
    for (;;) {
        std::vector<std::pair<int, std::shared_ptr<Job>>> admitted;
        {
            std::unique_lock lock(mutex_);
            if (!any_active() && queue_.empty()) {
                if (stopping_) break;
                wake_.wait_for(lock, kIdleWait);
                continue;
            }
            for (size_t i = 0; i < slots_.size() && !queue_.empty(); ++i) {
                if (slots_[i]->job) continue;
                admitted.emplace_back(static_cast<int>(i), std::move(queue_.front()));
                queue_.pop_front();
                ++busy_slots_;
            }
            metrics_.queue_depth = static_cast<int64_t>(queue_.size());
            // Past the grace of a shutdown, queued jobs end without running.
            if (stopping_ && Clock::now() >= grace_end_) {
                for (auto& job : queue_) {
                    job->finish(FinishReason::Shutdown, {static_cast<int64_t>(job->spec().prompt.size()), 0, 0});
                    ++metrics_.requests_cancelled;
                }
                queue_.clear();
                metrics_.queue_depth = 0;
            }
        }
        for (auto& [seq, job] : admitted) admit(seq, std::move(job));
        expire_jobs();
        prefill_step();
        decode_step();
    }
}

void Scheduler::admit(int seq, std::shared_ptr<Job> job) {
    slots_[seq] = std::make_unique<Slot>();
    Slot& slot = *slots_[seq];
    slot.job = std::move(job);
    const JobSpec& spec = slot.job->spec();
    slot.deadline = slot.job->queued_at() + spec.timeout;
    slot.sampler.emplace(spec.sampling, static_cast<int32_t>(n_vocab_));
    for (int32_t id : spec.prompt) slot.sampler->accept(id);
    slot.stream.emplace(tokenizer_, spec.prompt);
    slot.stop.emplace(spec.stop);
    ++metrics_.active_sequences;

    // A reset even before a restore: it also restarts whatever else the slot keeps.
    backend_.reset(seq);
    std::optional<StateSnapshot> hit;
    if (cache_ != nullptr) {
        try {
            hit = cache_->longest_prefix(spec.prompt);
        } catch (const std::exception& e) {
            log_(concat("request ", spec.id, ": prefix cache lookup failed: ", e.what(),
                        "; computing the whole prompt"));
        }
        if (hit) {
            ++metrics_.cache_hits;
            log_(concat("request ", spec.id, ": prefix cache: ", spec.prompt.size(), "-token prompt, ",
                        cache_->last_lookup()));
        } else {
            ++metrics_.cache_misses;
            log_(concat("request ", spec.id, ": prefix cache miss: ", cache_->last_lookup()));
        }
    }
    if (hit) {
        restore_snapshot(backend_, seq, *hit);
        slot.cached_tokens = hit->n_tokens();
        slot.stored_length = hit->n_tokens();
        slot.consumed = std::move(hit->tokens);
        slot.logits = std::move(hit->last_logits);
        metrics_.cached_tokens += static_cast<uint64_t>(slot.cached_tokens);
    }
    slot.logits.resize(static_cast<size_t>(n_vocab_));
    if (slot.consumed.size() == spec.prompt.size()) {
        // The whole prompt came from the cache, with its logits: no model evaluation before the first token.
        slot.phase = Slot::Phase::Decode;
        consume_logits(seq);
    }
}

void Scheduler::expire_jobs() {
    const auto now = Clock::now();
    bool past_grace;
    {
        std::lock_guard lock(mutex_);
        past_grace = stopping_ && now >= grace_end_;
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
        const Slot& slot = *slots_[i];
        if (!slot.job) continue;
        if (slot.job->cancelled()) {
            finish(static_cast<int>(i), FinishReason::Cancelled);
        } else if (now >= slot.deadline) {
            finish(static_cast<int>(i), FinishReason::Timeout);
        } else if (past_grace) {
            finish(static_cast<int>(i), FinishReason::Shutdown);
        }
    }
}

void Scheduler::prefill_step() {
    const size_t n_slots = slots_.size();
    for (size_t k = 0; k < n_slots; ++k) {
        const size_t seq = (next_prefill_ + k) % n_slots;
        Slot& slot = *slots_[seq];
        if (!slot.job || slot.phase != Slot::Phase::Prefill) continue;
        next_prefill_ = seq + 1;

        const std::vector<int32_t>& prompt = slot.job->spec().prompt;
        const auto n = static_cast<int64_t>(prompt.size());
        const auto pos = static_cast<int64_t>(slot.consumed.size());
        // The chunk ends at the next checkpoint when that comes first, so that its state can be stored.
        int64_t checkpoint = n;
        if (options_.checkpoint_every > 0) {
            checkpoint = std::min(checkpoint, (pos / options_.checkpoint_every + 1) * options_.checkpoint_every);
        }
        for (int64_t end : slot.job->spec().checkpoints) {
            if (end > pos) checkpoint = std::min(checkpoint, end);
        }
        const int64_t end = std::min(checkpoint, pos + options_.prefill_chunk);
        const auto chunk =
            std::span<const int32_t>(prompt).subspan(static_cast<size_t>(pos), static_cast<size_t>(end - pos));
        backend_.prefill(static_cast<int>(seq), chunk, slot.logits, /*all_logits=*/false);
        slot.consumed.insert(slot.consumed.end(), chunk.begin(), chunk.end());
        if (end == checkpoint) store_state(static_cast<int>(seq), /*end_of_prompt=*/end == n);
        if (end == n) {
            slot.phase = Slot::Phase::Decode;
            consume_logits(static_cast<int>(seq));
        }
        return;
    }
}

void Scheduler::decode_step() {
    batch_seqs_.clear();
    batch_tokens_.clear();
    for (size_t i = 0; i < slots_.size(); ++i) {
        const Slot& slot = *slots_[i];
        if (slot.job && slot.phase == Slot::Phase::Decode && slot.pending >= 0) {
            batch_seqs_.push_back(static_cast<int>(i));
            batch_tokens_.push_back(slot.pending);
        }
    }
    if (batch_seqs_.empty()) return;
    batch_logits_.resize(batch_seqs_.size() * static_cast<size_t>(n_vocab_));
    backend_.decode(batch_seqs_, batch_tokens_, batch_logits_);
    for (size_t b = 0; b < batch_seqs_.size(); ++b) {
        Slot& slot = *slots_[batch_seqs_[b]];
        slot.consumed.push_back(slot.pending);
        slot.pending = -1;
        const auto row = batch_logits_.begin() + static_cast<std::ptrdiff_t>(b * static_cast<size_t>(n_vocab_));
        std::copy(row, row + n_vocab_, slot.logits.begin());
        consume_logits(batch_seqs_[b]);
    }
}

void Scheduler::consume_logits(int seq) {
    Slot& slot = *slots_[seq];
    const JobSpec& spec = slot.job->spec();
    const int32_t token = slot.sampler->sample(slot.logits);
    const auto now = Clock::now();
    if (slot.generated == 0) {
        metrics_.time_to_first_token.observe(seconds_between(slot.job->queued_at(), now));
    } else {
        metrics_.inter_token_latency.observe(seconds_between(slot.last_token_at, now));
    }
    slot.last_token_at = now;
    if (tokenizer_.is_end_of_generation(token)) {
        finish(seq, FinishReason::Stop);
        return;
    }
    slot.sampler->accept(token);
    ++slot.generated;
    ++metrics_.generated_tokens;
    GeneratedPiece piece;
    piece.token = token;
    if (spec.top_logprobs >= 0) piece.logprobs = position_logprobs(slot.logits, token, spec.top_logprobs);
    piece.text = slot.stop->push(slot.stream->push(token));
    slot.job->publish(std::move(piece));
    if (slot.stop->stopped()) {
        finish(seq, FinishReason::Stop);
    } else if (slot.generated >= spec.max_tokens) {
        finish(seq, FinishReason::Length);
    } else {
        slot.pending = token;
    }
}

void Scheduler::store_state(int seq, bool end_of_prompt) {
    Slot& slot = *slots_[seq];
    if (cache_ == nullptr || slot.consumed.empty() ||
        static_cast<int64_t>(slot.consumed.size()) == slot.stored_length) {
        return;
    }
    try {
        cache_->store(take_snapshot(backend_, seq, slot.consumed, slot.logits), end_of_prompt);
        slot.stored_length = static_cast<int64_t>(slot.consumed.size());
    } catch (const std::exception& e) {
        log_(concat("request ", slot.job->spec().id, ": prefix cache: could not store ", slot.consumed.size(),
                    " tokens: ", e.what()));
    }
}

void Scheduler::finish(int seq, FinishReason reason) {
    Slot& slot = *slots_[seq];
    if (reason == FinishReason::Stop || reason == FinishReason::Length) {
        // The text of an incomplete character at the end, and what stop strings held back.
        std::string rest = slot.stop->push(slot.stream->flush());
        rest += slot.stop->flush();
        if (!rest.empty()) slot.job->publish(GeneratedPiece{-1, std::move(rest), std::nullopt});
    }
    // The state after the generated tokens (or as far as a cancelled prompt got), so that the next turn of
    // the conversation resumes here.
    store_state(seq, /*end_of_prompt=*/true);
    const auto now = Clock::now();
    metrics_.request_duration.observe(seconds_between(slot.job->queued_at(), now));
    const bool completed = reason == FinishReason::Stop || reason == FinishReason::Length;
    if (!completed) {
        log_(concat("request ", slot.job->spec().id, ": ", finish_reason_name(reason), " after ", slot.generated,
                    " tokens"));
    }
    slot.job->finish(reason,
                     {static_cast<int64_t>(slot.job->spec().prompt.size()), slot.generated, slot.cached_tokens});
    slot.job.reset();
    // The slot is counted free before the request is counted ended, so that a scrape which sees the request
    // ended sees its slot free too (counted the other way round, a test polling the cancelled count read the
    // slot still active now and then).
    --metrics_.active_sequences;
    ++(completed ? metrics_.requests_finished : metrics_.requests_cancelled);
    std::lock_guard lock(mutex_);
    --busy_slots_;
}

}  // namespace dendro::serve
