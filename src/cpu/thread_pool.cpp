#include "cpu/thread_pool.h"

#include <sys/resource.h>

#include <chrono>

#include "common/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dendro {
namespace {

// How long a waiting thread spins before it sleeps. Long enough to cover a barrier on an idle machine (the
// threads of a forward pass arrive within a few microseconds of each other, and a futex wake-up costs tens
// of microseconds on a VM), short enough that when the awaited thread has lost its core to another process,
// the waiter gives its own core up before it wastes a noticeable part of a time slice.
constexpr std::chrono::microseconds kSpinBeforeSleep{50};
// Spins between two looks at the clock (a pause is a few to a hundred cycles).
constexpr int kPausesPerClockCheck = 64;

// How many times the scheduler has taken the calling thread off its core against its will.
long involuntary_switches() {
#ifdef RUSAGE_THREAD
    rusage usage{};
    if (getrusage(RUSAGE_THREAD, &usage) == 0) return usage.ru_nivcsw;
#endif
    return -1;  // unknown: every long wait then counts as a stall
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    std::this_thread::yield();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads), team_size_(n_threads) {
    if (n_threads < 1 || n_threads > kMaxThreads) fail("invalid thread pool size ", n_threads);
    task_signals_ = std::make_unique<Signal[]>(static_cast<size_t>(n_threads));
    claim_starts_ = std::make_unique<ClaimStart[]>(static_cast<size_t>(n_threads));
    workers_.reserve(static_cast<size_t>(n_threads - 1));
    for (int thread = 1; thread < n_threads; ++thread) workers_.emplace_back([this, thread] { worker_loop(thread); });
}

ThreadPool::~ThreadPool() {
    stopping_ = true;
    for (int thread = 1; thread < n_threads_; ++thread) publish_change(task_signals_[thread]);
    for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::wait_for_change(Signal& signal, uint32_t seen, bool inside_task) {
    const auto start = std::chrono::steady_clock::now();
    const auto give_up = start + kSpinBeforeSleep;
    do {
        for (int i = 0; i < kPausesPerClockCheck; ++i) {
            if (signal.generation.load(std::memory_order_acquire) != seen) return;
            cpu_relax();
        }
    } while (std::chrono::steady_clock::now() < give_up);
    // Announce the sleep before the last look, so that publish_change either sees a sleeper and wakes it or
    // has advanced the word before that look (both sides are sequentially consistent).
    signal.sleepers.fetch_add(1, std::memory_order_seq_cst);
    while (signal.generation.load(std::memory_order_seq_cst) == seen) {
        signal.generation.wait(seen, std::memory_order_seq_cst);
    }
    signal.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (inside_task) {
        const std::chrono::nanoseconds waited = std::chrono::steady_clock::now() - start;
        sleep_wait_ns_.fetch_add(waited.count(), std::memory_order_relaxed);
    }
}

void ThreadPool::publish_change(Signal& signal) {
    signal.generation.fetch_add(1, std::memory_order_seq_cst);
    if (signal.sleepers.load(std::memory_order_seq_cst) > 0) signal.generation.notify_all();
}

void ThreadPool::run_task(int thread) {
    const long switches_before = team_ > 1 ? involuntary_switches() : 0;
    try {
        task_(thread, team_);
    } catch (...) {
        const std::lock_guard lock(error_mutex_);
        if (!first_error_) first_error_ = std::current_exception();
    }
    if (team_ > 1 && (switches_before < 0 || involuntary_switches() != switches_before)) {
        preempted_.store(true, std::memory_order_relaxed);
    }
}

void ThreadPool::worker_loop(int thread) {
    Signal& signal = task_signals_[thread];
    for (uint32_t seen = 0;; ++seen) {  // one advance of this worker's signal per task handed to it
        wait_for_change(signal, seen, /*inside_task=*/false);  // idle between tasks: no stall
        if (stopping_) return;
        run_task(thread);
        if (unfinished_.fetch_sub(1, std::memory_order_acq_rel) == 1) publish_change(finished_);
    }
}

void ThreadPool::run(FunctionRef<void(int thread, int n_threads)> task) {
    task_ = task;
    first_error_ = nullptr;
    const auto start = std::chrono::steady_clock::now();
    if (!window_.open()) window_.start(start, team_size_.next(start));
    team_ = window_.team();
    claims_.taken.store(0, std::memory_order_relaxed);  // handed over with the task (release)
    for (int thread = 0; thread < team_; ++thread) claim_starts_[thread].index = 0;
    TaskWaits waits;
    if (team_ > 1) {
        sleep_wait_ns_.store(0, std::memory_order_relaxed);
        preempted_.store(false, std::memory_order_relaxed);
        unfinished_.store(team_ - 1, std::memory_order_relaxed);
        const uint32_t finished_seen = finished_.generation.load(std::memory_order_relaxed);
        // Publishing also hands over task_, team_ and unfinished_ (release).
        for (int thread = 1; thread < team_; ++thread) publish_change(task_signals_[thread]);
        run_task(0);
        wait_for_change(finished_, finished_seen, /*inside_task=*/true);
        waits.sleep_wait_ns = static_cast<double>(sleep_wait_ns_.load(std::memory_order_relaxed));
        waits.preempted = preempted_.load(std::memory_order_relaxed);
    } else {
        run_task(0);
    }
    const auto end = std::chrono::steady_clock::now();
    waits.thread_ns = static_cast<double>(team_) * static_cast<double>((end - start).count());
    if (const std::optional<bool> stalled = window_.add(waits, end)) team_size_.finished(*stalled, end);
    task_ = {};
    if (first_error_) std::rethrow_exception(first_error_);
}

void ThreadPool::barrier() {
    if (team_ == 1) return;
    // Read before arriving: the last thread to arrive advances the generation only after everyone counted.
    const uint32_t seen = barrier_.generation.load(std::memory_order_acquire);
    if (barrier_arrived_.fetch_add(1, std::memory_order_acq_rel) == team_ - 1) {
        barrier_arrived_.store(0, std::memory_order_relaxed);
        publish_change(barrier_);
        return;
    }
    wait_for_change(barrier_, seen, /*inside_task=*/true);
}

int64_t ThreadPool::claim(int thread, int64_t n_items) {
    int64_t& start = claim_starts_[thread].index;
    const int64_t item = claims_.taken.fetch_add(1, std::memory_order_relaxed) - start;
    if (item < n_items) return item;
    start += n_items + team_;  // the section's items and one index past them per thread
    return -1;
}

void ThreadPool::for_each_index(int64_t n, FunctionRef<void(int64_t i)> fn) {
    run([&](int thread, int) {
        for (int64_t i = claim(thread, n); i >= 0; i = claim(thread, n)) fn(i);
    });
}

}  // namespace dendro
