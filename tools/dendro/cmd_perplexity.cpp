// dendro perplexity: perplexity of a model over a text file, reported as llama.cpp's perplexity tool does.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "bundled_model.h"
#include "commands.h"
#include "flag_checks.h"
#include "text_input.h"
#include "common/error.h"
#include "model/model.h"
#include "generate/perplexity.h"
#include "tokenizer/tokenizer.h"

namespace dendro::cli {
namespace {

struct PerplexityCommandOptions {
    std::string model_path;
    std::string text_path;
    int32_t n_ctx = 512;  // llama.cpp's customary perplexity context
    int32_t max_chunks = -1;
    int n_threads = 0;
    std::string device = "auto";
};

void run_perplexity(const PerplexityCommandOptions& opt) {
    if (opt.max_chunks < -1 || opt.max_chunks == 0) fail("--chunks must be positive (or -1 for all), got ", opt.max_chunks);
    const std::string text = read_text_file(opt.text_path);
    const std::string model_path = opt.model_path.empty() ? default_model_path() : opt.model_path;
    const auto model = Model::load(model_path);
    const auto tokenizer = Tokenizer::from_gguf(model->gguf());
    const bool add_bos = tokenizer->add_bos_default() && tokenizer->bos() >= 0;
    const std::vector<int32_t> tokens = tokenizer->encode(text, add_bos);

    PerplexityOptions options;
    options.n_ctx = opt.n_ctx;
    options.max_chunks = opt.max_chunks;
    options.bos = add_bos ? tokenizer->bos() : -1;
    options.n_threads = opt.n_threads;
    check_perplexity_input(tokens.size(), options);

    BackendOptions backend_options;
    backend_options.n_threads = opt.n_threads;
    const auto backend = make_backend(parse_device(opt.device), *model, backend_options);
    std::fprintf(stderr, "dendro: %s: %zu tokens in chunks of %d, %s\n", opt.text_path.c_str(), tokens.size(),
                 opt.n_ctx, backend->name().c_str());

    const auto start = std::chrono::steady_clock::now();
    const PerplexityResult result = compute_perplexity(*backend, tokens, options, [](int32_t chunk, double ppl) {
        std::printf("[%d]%.4f,", chunk + 1, ppl);
        std::fflush(stdout);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", result.ppl, result.ppl_uncertainty);
    std::fprintf(stderr, "dendro: %lld tokens scored over %d chunks in %.2f s\n",
                 static_cast<long long>(result.n_scored), result.n_chunks, seconds);
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
    auto opt = std::make_shared<PerplexityCommandOptions>();
    CLI::App* cmd = app.add_subcommand(
        "perplexity", "Perplexity over a text file (llama.cpp's method: chunks of --ctx tokens, second halves scored)");
    non_empty_path(cmd->add_option("-m,--model", opt->model_path, "GGUF model file (default: the bundled model)"));
    non_empty_path(cmd->add_option("-f,--file", opt->text_path, "Text file to evaluate"))->required();
    cmd->add_option("-c,--ctx", opt->n_ctx, "Tokens per chunk")->capture_default_str();
    cmd->add_option("--chunks", opt->max_chunks, "Evaluate at most this many chunks (-1 = all)")
        ->capture_default_str();
    add_thread_count_option(cmd, opt->n_threads);
    cmd->add_option("--device", opt->device, "auto, cpu or cuda")->capture_default_str();
    cmd->callback([opt] { run_perplexity(*opt); });
}

}  // namespace dendro::cli
