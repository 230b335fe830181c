#include "cpu/topology.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace dendro {
namespace {

// The CPUs this process may run on (sched_getaffinity), or none when the call fails.
std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
    return cpus;
}

// Physical cores among `cpus`: distinct (package, core) pairs in sysfs; 0 when sysfs does not say.
int physical_cores(const std::vector<int>& cpus) {
    std::set<std::pair<long, long>> cores;
    for (const int cpu : cpus) {
        const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        long package = -1, core = -1;
        std::ifstream(dir + "physical_package_id") >> package;
        std::ifstream(dir + "core_id") >> core;
        if (package < 0 || core < 0) return 0;
        cores.emplace(package, core);
    }
    return static_cast<int>(cores.size());
}

// The CPU quota of this process's cgroup, in whole CPUs rounded up; 0 when there is none (or no cgroup
// file says). cgroup v2: "<quota> <period>" in cpu.max ("max" = none); v1: cpu.cfs_quota_us (-1 = none) and
// cpu.cfs_period_us.
int cgroup_cpu_quota() {
    std::ifstream cgroups("/proc/self/cgroup");
    std::string line;
    while (std::getline(cgroups, line)) {
        // "hierarchy-id:controllers:path"; v2 is "0::path", v1's cpu controller lists "cpu" among others.
        const size_t first = line.find(':'), second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        const std::string controllers = line.substr(first + 1, second - first - 1);
        const std::string path = line.substr(second + 1);
        double quota = -1, period = -1;
        if (controllers.empty()) {
            std::ifstream max("/sys/fs/cgroup" + path + "/cpu.max");
            std::string quota_text;
            if (max >> quota_text >> period && quota_text != "max") quota = std::strtod(quota_text.c_str(), nullptr);
        } else {
            std::stringstream names(controllers);
            std::string name;
            bool has_cpu = false;
            while (std::getline(names, name, ',')) has_cpu = has_cpu || name == "cpu";
            if (!has_cpu) continue;
            for (const std::string root : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
                std::ifstream(root + path + "/cpu.cfs_quota_us") >> quota;
                std::ifstream(root + path + "/cpu.cfs_period_us") >> period;
                if (quota > 0 && period > 0) break;
            }
        }
        if (quota > 0 && period > 0) return static_cast<int>(std::ceil(quota / period));
    }
    return 0;
}

}  // namespace

int default_thread_count() {
    const std::vector<int> cpus = allowed_cpus();
    int count = physical_cores(cpus);
    if (count == 0) count = static_cast<int>(cpus.size());
    if (count == 0) count = static_cast<int>(std::thread::hardware_concurrency());
    if (const int quota = cgroup_cpu_quota(); quota > 0) count = std::min(count, quota);
    return std::max(count, 1);
}

}  // namespace dendro
