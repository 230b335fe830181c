#include "exited_process.h"

#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>

namespace dendro::test {

pid_t exited_process_id() {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) ::_exit(0);
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) throw std::runtime_error("waitpid failed");
    return pid;
}

std::string temp_file_name(const std::string& target, pid_t pid) {
    return target + ".tmp-" + std::to_string(pid) + "-0123456789abcdef";
}

}  // namespace dendro::test
