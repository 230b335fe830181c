// Process ids for tests of "is its writer still alive" logic.
#pragma once

#include <sys/types.h>

#include <string>

namespace dendro::test {

// The pid of a child process that has exited and been reaped: no process has it (until the kernel reuses it).
pid_t exited_process_id();

// The name AtomicFileWriter gives its temporary file for `target` when written by process `pid`.
std::string temp_file_name(const std::string& target, pid_t pid);

}  // namespace dendro::test
