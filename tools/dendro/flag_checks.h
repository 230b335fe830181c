// Checks of flag values that several subcommands share, done while parsing so that a bad value is one
// error line naming the flag before any work starts.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace dendro::cli {

// Rejects an empty value: a path flag given '' would otherwise silently mean "not given". Returns `option`.
CLI::Option* non_empty_path(CLI::Option* option);

// A decimal integer in [0, 2^64 - 1]; throws dendro::Error naming `flag` for a sign, anything but digits, or
// a value out of range (CLI11 alone would wrap -1 and 2^64 around to 2^64 - 1).
uint64_t parse_uint64_flag(const std::string& flag, const std::string& text);

// The -t,--threads option of the commands that compute: 0 (the default: one thread per physical core) up to
// the thread pool's bound.
CLI::Option* add_thread_count_option(CLI::App* cmd, int& n_threads);

}  // namespace dendro::cli
