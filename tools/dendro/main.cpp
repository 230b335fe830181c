// dendro: inference for Mamba language models. Every error reaches the user as one line on stderr and a
// non-zero exit status.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
    CLI::App app{"dendro: fast, exact inference for Mamba language models"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "dendro 0.1.0");
    dendro::cli::add_run_command(app);
    dendro::cli::add_info_command(app);
    dendro::cli::add_tokenize_command(app);
    dendro::cli::add_convert_command(app);
    dendro::cli::add_perplexity_command(app);
    dendro::cli::add_bench_command(app);
    dendro::cli::add_cache_command(app);
    dendro::cli::add_serve_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "dendro: %s\n", e.what());
        return 2;
    } catch (const dendro::Error& e) {
        std::fprintf(stderr, "dendro: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "dendro: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dendro: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
