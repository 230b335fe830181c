// dendro run: generate text from a prompt, streaming tokens to stdout as they are produced.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "backend.h"
#include "bundled_model.h"
#include "byte_size.h"
#include "cached_prefill.h"
#include "commands.h"
#include "measure.h"
#include "text_input.h"
#include "error.h"
#include "generation.h"
#include "model.h"
#include "prefix_store.h"
#include "tokenizer.h"

namespace dendro::cli {
namespace {

struct RunOptions {
    std::string model_path;
    std::string prompt;
    std::string prompt_file;
    int32_t n_predict = 128;
    SamplingParams sampling;
    bool seed_given = false;
    int n_threads = 0;
    std::string device = "auto";
    PromptCacheOptions cache;
};

double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

void run(RunOptions& opt) {
    const std::string prompt = opt.prompt_file.empty() ? opt.prompt : read_text_file(opt.prompt_file);
    if (prompt.empty()) fail("the prompt is empty: give text with -p TEXT or -f FILE");
    if (opt.n_predict < 0) fail("-n must be >= 0, got ", opt.n_predict);
    if (opt.n_threads < 0) fail("-t must be >= 0, got ", opt.n_threads);
    if (!opt.seed_given) opt.sampling.seed = std::random_device{}();
    opt.sampling.validate();

    const std::string model_path = opt.model_path.empty() ? default_model_path() : opt.model_path;
    const auto model = MambaModel::load(model_path);
    const auto tokenizer = Tokenizer::from_gguf(model->gguf());
    const std::vector<int32_t> prompt_tokens = tokenizer->encode(prompt, tokenizer->add_bos_default());
    if (prompt_tokens.empty()) fail("the prompt encodes to no tokens");

    BackendOptions backend_options;
    backend_options.n_threads = opt.n_threads;
    const auto backend = make_backend(parse_device(opt.device), *model, backend_options);
    const int seq = 0;

    const auto prefix_store = open_prefix_store(opt.cache, *model, [](const std::string& message) {
        std::fprintf(stderr, "dendro: warning: %s\n", message.c_str());
    });

    std::vector<float> logits(static_cast<size_t>(model->hparams().n_vocab));
    const auto prefill_start = std::chrono::steady_clock::now();
    CachedPrefill cached_prefill =
        prefill_with_cache(*backend, seq, prompt_tokens, prefix_store.get(), opt.cache.checkpoint_every, logits);
    const double prefill_seconds = seconds_since(prefill_start);

    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
    const GenerationResult result =
        generate(*backend, *tokenizer, seq, logits, prompt_tokens, opt.sampling, opt.n_predict,
                 [](std::string_view text) {
                     std::fwrite(text.data(), 1, text.size(), stdout);
                     std::fflush(stdout);
                 });
    std::fputc('\n', stdout);
    std::fflush(stdout);

    // Prompt speed counts the tokens actually run through the model: restored ones cost no compute.
    const int64_t restored_tokens = cached_prefill.reused_tokens();
    const int64_t computed_tokens = static_cast<int64_t>(prompt_tokens.size()) - restored_tokens;
    const std::string restored_note = restored_tokens > 0 ? concat(", ", restored_tokens, " restored") : "";
    const double decode_rate = per_second(static_cast<double>(result.decode_steps), result.decode_seconds);
    const double weight_gbps = decode_rate * static_cast<double>(backend->weight_bytes_per_token()) / 1e9;
    std::fprintf(stderr,
                 "dendro: prompt %zu tok%s in %.3f s (%.1f tok/s) | generated %zu tok in %.3f s (%.1f tok/s, "
                 "%.2f GB/s of weights) | %s, seed %llu\n",
                 prompt_tokens.size(), restored_note.c_str(), prefill_seconds,
                 per_second(static_cast<double>(computed_tokens), prefill_seconds), result.tokens.size(),
                 result.decode_seconds, decode_rate, weight_gbps, backend->name().c_str(),
                 static_cast<unsigned long long>(opt.sampling.seed));
    if (prefix_store) {
        const CachedPrefillStats& cache_stats = cached_prefill.finish();  // the prompt's state is saved by now
        std::fprintf(stderr, "dendro: prompt cache: %lld of %zu prompt tokens restored, %lld computed, %lld states saved\n",
                     static_cast<long long>(cache_stats.reused_tokens), prompt_tokens.size(),
                     static_cast<long long>(cache_stats.computed_tokens),
                     static_cast<long long>(cache_stats.snapshots_stored));
    }
}

}  // namespace

void add_run_command(CLI::App& app) {
    auto opt = std::make_shared<RunOptions>();
    CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt, streaming it to stdout");
    cmd->add_option("-m,--model", opt->model_path, "GGUF model file (default: the bundled model)");
    auto* prompt = cmd->add_option("-p,--prompt", opt->prompt, "Prompt text");
    auto* file = cmd->add_option("-f,--file", opt->prompt_file, "Read the prompt from this file");
    prompt->excludes(file);
    cmd->add_option("-n,--n-predict", opt->n_predict, "Tokens to generate at most")->capture_default_str();
    cmd->add_option("--temp", opt->sampling.temperature, "Temperature (0 = greedy)")->capture_default_str();
    cmd->add_option("--top-k", opt->sampling.top_k, "Top-k (0 = off)")->capture_default_str();
    cmd->add_option("--top-p", opt->sampling.top_p, "Top-p (1 = off)")->capture_default_str();
    cmd->add_option("--min-p", opt->sampling.min_p, "Min-p (0 = off)")->capture_default_str();
    cmd->add_option("--repeat-penalty", opt->sampling.repeat_penalty, "Repetition penalty (1 = off)")
        ->capture_default_str();
    cmd->add_option("--repeat-last-n", opt->sampling.repeat_last_n, "Window of the repetition penalty")
        ->capture_default_str();
    cmd->add_option_function<uint64_t>(
        "-s,--seed",
        [opt](uint64_t seed) {
            opt->sampling.seed = seed;
            opt->seed_given = true;
        },
        "RNG seed (default: random, printed in the closing stats)");
    cmd->add_option("-t,--threads", opt->n_threads, "CPU threads (0 = all)")->capture_default_str();
    cmd->add_option("--device", opt->device, "auto, cpu or cuda")->capture_default_str();
    auto* prompt_cache = cmd->add_option("--prompt-cache", opt->cache.prompt_cache_file,
                                         "Resume from the prompt state saved in FILE when it holds a prefix of this "
                                         "prompt; save this prompt's state there otherwise")
                            ->type_name("FILE");
    auto* cache_dir = cmd->add_option("--cache-dir", opt->cache.cache_dir,
                                      "Automatic prefix cache directory, shareable between runs and processes "
                                      "(inspect it with `dendro cache`)")
                         ->type_name("DIR");
    cache_dir->excludes(prompt_cache);
    cmd->add_option("--cache-every", opt->cache.checkpoint_every,
                    "With --cache-dir: save a checkpoint every N prompt tokens (0 = only the prompt's end)")
        ->type_name("N")
        ->capture_default_str()
        ->needs(cache_dir);
    cmd->add_option_function<std::string>(
           "--cache-size", [opt](const std::string& text) { opt->cache.max_bytes = parse_byte_size(text); },
           concat("With --cache-dir: its size bound, least recently used entries evicted beyond it (default ",
                  format_byte_size(kDefaultPrefixCacheBytes), ")"))
        ->type_name("SIZE")
        ->needs(cache_dir);
    cmd->callback([opt] { run(*opt); });
}

}  // namespace dendro::cli
