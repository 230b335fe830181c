// A fixed team of threads for the CPU backend's forward pass, with barriers that stay fast on an idle machine
// and do not collapse on a busy one.
//
// Why not OpenMP: a waiting OpenMP thread spins for a long, fixed time before it sleeps (libgomp's default),
// so with one other busy process on a 2-core machine every barrier waited out a scheduler time slice and
// `-t 2` decoded ~160x slower than `-t 1`. Here a waiting thread spins only for a short, bounded time
// (the few microseconds a barrier takes when every thread is running) and then sleeps on a futex, giving its
// core to the thread it waits for. Consecutive tasks are judged together, over windows of some
// milliseconds: a window in which the threads spent a large share of their time asleep waiting for each
// other and a thread was preempted (taken off its core by the scheduler) is stalled: another process is
// competing for the cores, and the next tasks run on a smaller team (adaptive_team_size.h). One short
// preemption in a window does not count.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <memory>
#include <vector>

#include "common/function_ref.h"
#include "cpu/adaptive_team_size.h"

namespace dendro {

// More threads than any machine this runs on has: a larger request is a mistake, not a wish.
inline constexpr int kMaxThreads = 1024;

class ThreadPool {
public:
    // A team of n_threads (1..kMaxThreads): the caller of run() is thread 0, n_threads - 1 workers start here.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs task(thread, n_threads) once on each of the first n_threads threads of the pool and returns when
    // all have finished. n_threads is the whole pool on a free machine and fewer while other processes
    // compete for the cores (see above); a task must share its work by the n_threads it is given.
    // The first exception a task throws is rethrown here, after every thread has finished; a task that may
    // throw must not then call barrier(), which would wait for the thread that left. Not reentrant.
    // The task is referred to, not copied (a decode step calls this once a token: no allocation).
    void run(FunctionRef<void(int thread, int n_threads)> task);

    // Called by every thread of the task inside run(): returns once all of them have reached it.
    void barrier();

    // Work dealt out inside a task to whichever thread is free: the calling thread's next item of the team's
    // current section of n_items, or -1 once all are taken. Every thread of the team calls it with the same
    // n_items until it gets -1, and a barrier (or the task's end) separates two sections: each thread took
    // exactly one index past a section's items, so all know where the next section's indices start, and no
    // reset (which would need one more barrier) is needed.
    int64_t claim(int thread, int64_t n_items);

    // Calls fn(i) for every i in [0, n), indices handed out one at a time to whichever thread is free
    // (for items of uneven cost). The order of the calls is unspecified.
    void for_each_index(int64_t n, FunctionRef<void(int64_t i)> fn);

private:

    // A word that threads wait on until it changes, and how many of them sleep on it. One cache line each,
    // so that spinning on one does not slow the writers of another.
    struct alignas(64) Signal {
        std::atomic<uint32_t> generation{0};
        std::atomic<int> sleepers{0};
    };
    // Waits until `signal` advances past `seen`: spins briefly, then sleeps until notified. Inside a task, the
    // time of a wait that slept is added to the task's sleep_wait_ns_.
    void wait_for_change(Signal& signal, uint32_t seen, bool inside_task);
    // Advances `signal` and wakes its sleepers, if any.
    static void publish_change(Signal& signal);
    void worker_loop(int thread);
    void run_task(int thread);

    const int n_threads_;
    std::vector<std::thread> workers_;
    std::unique_ptr<Signal[]> task_signals_;  // one per worker: advanced when a task is handed to it

    FunctionRef<void(int, int)> task_;  // valid for the duration of one run()
    int team_ = 1;                    // threads running the current task
    std::atomic<int> unfinished_{0};  // workers still running the current task
    Signal finished_;
    bool stopping_ = false;

    std::atomic<int> barrier_arrived_{0};
    Signal barrier_;

    // claim(): the indices taken in the current task, and where each thread's current section starts.
    struct alignas(64) ClaimCounter {
        std::atomic<int64_t> taken{0};
    };
    struct alignas(64) ClaimStart {
        int64_t index = 0;
    };
    ClaimCounter claims_;
    std::unique_ptr<ClaimStart[]> claim_starts_;

    AdaptiveTeamSize team_size_;
    StallWindow window_;  // the tasks judged together, all run on window_.team() threads
    std::atomic<int64_t> sleep_wait_ns_{0};  // waits that slept, in the current task
    std::atomic<bool> preempted_{false};    // a thread of the current task, while running it

    std::mutex error_mutex_;
    std::exception_ptr first_error_;
};

}  // namespace dendro
