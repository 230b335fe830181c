#include "flag_checks.h"

#include <charconv>
#include <limits>
#include <system_error>

#include "common/error.h"
#include "cpu/thread_pool.h"

namespace dendro::cli {

CLI::Option* non_empty_path(CLI::Option* option) {
    return option->check(CLI::Validator(
        [](const std::string& value) { return value.empty() ? std::string("must not be empty: give a path or leave the flag out") : std::string(); },
        "", "non-empty path"));
}

uint64_t parse_uint64_flag(const std::string& flag, const std::string& text) {
    uint64_t value = 0;
    const char* end = text.data() + text.size();
    // from_chars takes no sign for an unsigned type, so "-1" is refused rather than wrapped.
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    if (error == std::errc::result_out_of_range) fail(flag, " must be at most ", kMax, ", got ", text);
    if (error != std::errc() || stop != end) fail(flag, " must be an integer in [0, ", kMax, "], got '", text, "'");
    return value;
}

CLI::Option* add_thread_count_option(CLI::App* cmd, int& n_threads) {
    return cmd->add_option("-t,--threads", n_threads, "CPU threads (0 = one per physical core)")
        ->check(CLI::Range(0, kMaxThreads))
        ->capture_default_str();
}

}  // namespace dendro::cli
