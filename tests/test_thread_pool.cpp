// The CPU backend's thread pool: every thread runs each task once, barriers separate phases, errors reach
// the caller, and it keeps working when there are more threads than cores.
#include "cpu/thread_pool.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <stdexcept>
#include <vector>

#include "cpu/adaptive_team_size.h"
#include "cpu/topology.h"
#include "common/error.h"

namespace dendro {
namespace {

TEST(ThreadPool, RunsTheTaskOnceOnEachThreadOfTheTeam) {
    for (const int n : {1, 2, 3, 8}) {
        ThreadPool pool(n);
        EXPECT_EQ(pool.size(), n);
        for (int round = 0; round < 100; ++round) {
            std::vector<std::atomic<int>> calls(static_cast<size_t>(n));
            std::atomic<int> team{0};
            pool.run([&](int thread, int n_threads) {
                team = n_threads;
                ++calls[static_cast<size_t>(thread)];
            });
            // The first task gets the whole pool; later ones fewer threads if this busy machine stalled them.
            if (round == 0) EXPECT_EQ(team.load(), n);
            ASSERT_GE(team.load(), 1);
            ASSERT_LE(team.load(), n);
            for (int t = 0; t < n; ++t) {
                EXPECT_EQ(calls[static_cast<size_t>(t)].load(), t < team ? 1 : 0)
                    << "thread " << t << " of a team of " << team << ", round " << round;
            }
        }
    }
}

// Spins on the calling thread for `duration` (work that needs the core, unlike a sleep).
void spin_for(std::chrono::milliseconds duration) {
    const auto end = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < end) {
    }
}

bool pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0;
}

// Another process taking a core, made here: thread 1 of the task and a busy thread share one CPU, so the
// scheduler preempts thread 1 while thread 0 waits for it at a barrier. The next task runs on a smaller team.
TEST(ThreadPool, ATaskStalledByCompetitionForACoreShrinksTheNextTeam) {
    cpu_set_t allowed;
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &allowed)) ++cpu;
    ThreadPool pool(2);
    std::atomic<bool> pinned{true};
    pool.run([&](int thread, int) {
        if (thread == 1) {
            pinned = pin_to_cpu(cpu);
            std::thread competitor([&] {
                pin_to_cpu(cpu);
                spin_for(std::chrono::milliseconds(60));
            });
            spin_for(std::chrono::milliseconds(60));
            competitor.join();
        }
        pool.barrier();
    });
    ASSERT_TRUE(pinned.load());
    std::atomic<int> team{0};
    pool.run([&](int, int n_threads) { team = n_threads; });
    EXPECT_EQ(team.load(), 1);
}

// Each phase reads what every thread wrote in the phase before: a barrier that let one thread through early
// would make it read a stale value. Eight threads on this 2-core machine also exercise the sleeping path.
TEST(ThreadPool, BarrierSeparatesPhases) {
    constexpr int kThreads = 8, kPhases = 2000;
    ThreadPool pool(kThreads);
    std::vector<std::atomic<int>> slots(kThreads);
    std::atomic<int> stale{0};
    pool.run([&](int thread, int n_threads) {
        for (int phase = 1; phase <= kPhases; ++phase) {
            slots[static_cast<size_t>(thread)].store(phase, std::memory_order_relaxed);
            pool.barrier();
            for (int other = 0; other < n_threads; ++other) {
                if (slots[static_cast<size_t>(other)].load(std::memory_order_relaxed) != phase) ++stale;
            }
            pool.barrier();
        }
    });
    EXPECT_EQ(stale.load(), 0);
}

TEST(ThreadPool, ForEachIndexVisitsEveryIndexOnce) {
    ThreadPool pool(3);
    for (const int64_t n : {0, 1, 2, 1000}) {
        std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
        pool.for_each_index(n, [&](int64_t i) { ++visits[static_cast<size_t>(i)]; });
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(visits[static_cast<size_t>(i)].load(), 1) << "index " << i;
    }
}

// Claim sections one after another, a barrier between, over several tasks: every item of every section goes
// to exactly one thread, and a thread held up inside a section leaves the rest of its items to the others
// (a fixed share would make it take a third of them).
TEST(ThreadPool, ClaimHandsOutEachSectionsItemsOnceToWhoeverIsFree) {
    ThreadPool pool(3);
    const std::vector<int64_t> sections = {0, 1, 5, 64, 300};
    constexpr auto kHeldUp = std::chrono::milliseconds(20);
    for (int task = 0; task < 3; ++task) {
        std::vector<std::vector<std::atomic<int>>> claims;
        for (const int64_t n : sections) claims.emplace_back(static_cast<size_t>(n));
        std::atomic<int> out_of_range{0}, team{0};
        std::atomic<int64_t> held_up_items{0};
        pool.run([&](int thread, int n_threads) {
            team = n_threads;
            for (size_t s = 0; s < sections.size(); ++s) {
                for (int64_t i = pool.claim(thread, sections[s]); i >= 0; i = pool.claim(thread, sections[s])) {
                    if (i >= sections[s]) {
                        ++out_of_range;
                        continue;
                    }
                    ++claims[s][static_cast<size_t>(i)];
                    if (thread == 0 && n_threads > 1 && s + 1 == sections.size()) {
                        ++held_up_items;
                        std::this_thread::sleep_for(kHeldUp);
                    }
                }
                pool.barrier();
            }
        });
        EXPECT_EQ(out_of_range.load(), 0);
        for (size_t s = 0; s < sections.size(); ++s) {
            for (int64_t i = 0; i < sections[s]; ++i) ASSERT_EQ(claims[s][static_cast<size_t>(i)].load(), 1) << "section " << s << " item " << i;
        }
        if (team > 1) EXPECT_LT(held_up_items.load(), sections.back() / 10) << "task " << task;
    }
}

TEST(ThreadPool, RethrowsTheFirstErrorAfterAllThreadsFinish) {
    // 4 threads on a machine that may have fewer cores: the adaptive team may be smaller, so every count is
    // taken against the team size each run reports.
    ThreadPool pool(4);
    std::atomic<int> finished{0}, team{0};
    EXPECT_THROW(pool.run([&](int thread, int n_threads) {
        team = n_threads;
        if (thread == 0) throw std::runtime_error("worker failed");
        ++finished;
    }),
                 std::runtime_error);
    EXPECT_EQ(finished.load(), team.load() - 1);
    // The pool is still usable.
    std::atomic<int> ran{0};
    pool.run([&](int, int n_threads) {
        team = n_threads;
        ++ran;
    });
    EXPECT_EQ(ran.load(), team.load());
}

TEST(ThreadPool, RefusesAnEmptyTeam) {
    EXPECT_THROW(ThreadPool{0}, Error);
    EXPECT_THROW(ThreadPool{-1}, Error);
}

// The team-size rule on a made-up clock.
TEST(AdaptiveTeamSize, ShrinksOnStallsAndProbesAgainWithBackoff) {
    using Clock = AdaptiveTeamSize::Clock;
    const Clock::duration first = AdaptiveTeamSize::kFirstProbeInterval;
    Clock::time_point now{};
    AdaptiveTeamSize team(4);
    EXPECT_EQ(team.next(now), 4);
    team.finished(false, now);
    EXPECT_EQ(team.next(now), 4);  // no stall: the whole pool again
    team.finished(true, now);
    EXPECT_EQ(team.next(now), 3);  // a stall: one fewer
    team.finished(true, now);
    EXPECT_EQ(team.next(now), 2);
    team.finished(false, now);
    EXPECT_EQ(team.next(now + first / 2), 2);  // no probe before the interval has passed
    team.finished(false, now + first / 2);
    now += first;
    EXPECT_EQ(team.next(now), 3);  // the probe
    team.finished(true, now);      // stalled: back to 2, and the next probe waits twice as long
    EXPECT_EQ(team.next(now + first + first / 2), 2);
    team.finished(false, now + first + first / 2);
    now += 2 * first;
    EXPECT_EQ(team.next(now), 3);
    team.finished(false, now);     // the probe ran clean: keep it, and probe again soon
    now += first;
    EXPECT_EQ(team.next(now), 4);
    team.finished(false, now);
    EXPECT_EQ(team.next(now + 10 * first), 4);  // never above the pool
}

TEST(AdaptiveTeamSize, BackoffIsBoundedAndOneThreadNeverStalls) {
    using Clock = AdaptiveTeamSize::Clock;
    Clock::time_point now{};
    AdaptiveTeamSize team(2);
    for (int i = 0; i < 40; ++i) {  // a machine that stays busy: every probe stalls
        const int size = team.next(now);
        team.finished(size > 1, now);
        now += AdaptiveTeamSize::kLongestProbeInterval;
    }
    EXPECT_EQ(team.next(now), 2) << "a probe is still made after the longest interval";
    EXPECT_EQ(AdaptiveTeamSize(0).max_threads(), 1);
}

// The stall rule on a made-up clock: a window of short tasks holds one preemption of a few milliseconds
// without a stall, and a competitor's waits (half of every task) stall it as soon as they pass a quarter
// of the window.
TEST(StallWindow, JudgesTasksTogetherOverTheWindow) {
    using Clock = StallWindow::Clock;
    constexpr double kTaskNs = 1e6, kWindowNs = 2 * 2e7;  // 1 ms tasks on 2 threads; a window of 2 x 20 ms
    const Clock::duration task = std::chrono::milliseconds(1);
    Clock::time_point now{};
    StallWindow window;
    EXPECT_FALSE(window.open());
    window.start(now, 2);
    EXPECT_TRUE(window.open());
    EXPECT_EQ(window.team(), 2);
    // 3 ms asleep in one task (three times the task's thread time): alone, a stall; in the window, 4 %.
    now += task;
    EXPECT_EQ(window.add({2 * kTaskNs, 3e6, true}, now), std::nullopt);
    for (int i = 1; i < 19; ++i) {
        now += task;
        EXPECT_EQ(window.add({2 * kTaskNs, 0.0, false}, now), std::nullopt) << "task " << i;
    }
    now += task;
    EXPECT_EQ(window.add({2 * kTaskNs, 0.0, false}, now), std::optional<bool>(false));
    EXPECT_FALSE(window.open());

    // A competitor: 60 % of every task asleep. Stalled once the waits pass a quarter of the whole window's
    // thread time (10 ms: the ninth task), before the window's 20 ms are up.
    window.start(now, 2);
    std::optional<bool> verdict;
    int tasks = 0;
    while (!verdict && tasks < 20) {
        now += task;
        verdict = window.add({2 * kTaskNs, 0.6 * 2 * kTaskNs, tasks == 0}, now);
        ++tasks;
    }
    EXPECT_EQ(verdict, std::optional<bool>(true));
    EXPECT_EQ(tasks, 9);

    // A competitor's first task: asleep for over a quarter of a whole window already, so judged at once.
    window.start(now, 2);
    now += 3 * task;
    EXPECT_EQ(window.add({2 * 3 * kTaskNs, 0.3 * kWindowNs, true}, now), std::optional<bool>(true));
    EXPECT_FALSE(window.open());

    // Asleep over a quarter of the time but nobody preempted (uneven work): no stall.
    window.start(now, 2);
    now += StallWindow::kWindow;
    EXPECT_EQ(window.add({kWindowNs, 0.5 * kWindowNs, false}, now), std::optional<bool>(false));
    // A task longer than the window is judged alone; one thread never stalls.
    window.start(now, 2);
    now += 3 * StallWindow::kWindow;
    EXPECT_EQ(window.add({3 * kWindowNs, 0.5 * 3 * kWindowNs, true}, now), std::optional<bool>(true));
    window.start(now, 1);
    now += task;
    EXPECT_EQ(window.add({kTaskNs, 0.0, true}, now), std::optional<bool>(false));
}

TEST(ThreadPool, DefaultThreadCountIsAtLeastOne) { EXPECT_GE(default_thread_count(), 1); }

}  // namespace
}  // namespace dendro
