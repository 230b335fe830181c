// How many threads the CPU backend uses when the user does not say: one per physical core this process may
// run on. SMT siblings share a core's load/store and vector units, which decode saturates, so a second thread
// per core adds barrier cost and no throughput; CPUs outside the affinity mask (taskset, cpusets) and beyond
// a container's CPU quota are not ours to use.
#pragma once

namespace dendro {

// At least 1.
int default_thread_count();

}  // namespace dendro
