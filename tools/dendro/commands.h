// Subcommands of the `dendro` executable. Each file cmd_<name>.cpp adds one subcommand to the app; the
// library does the work, the command only parses flags and prints.
#pragma once

#include <CLI/CLI.hpp>

namespace dendro::cli {

void add_run_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_cache_command(CLI::App& app);
void add_serve_command(CLI::App& app);

}  // namespace dendro::cli
