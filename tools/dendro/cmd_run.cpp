// dendro run: generate text from a prompt, streaming tokens to stdout as they are produced; with --logprobs,
// print every token's log-probability as JSON lines instead (logprob_lines.h).
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <random>
#include <string>

#include "backend/backend.h"
#include "bundled_model.h"
#include "common/byte_size.h"
#include "cache/cached_prefill.h"
#include "commands.h"
#include "common/error.h"
#include "flag_checks.h"
#include "generate/generation.h"
#include "logprob_lines.h"
#include "generate/logprobs.h"
#include "measure.h"
#include "text_input.h"
#include "model/model.h"
#include "cache/prefix_store.h"
#include "tokenizer/tokenizer.h"

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
    int32_t logprobs = -1;  // alternatives per token in the JSON lines; -1 = plain text output
};

double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

void run(RunOptions& opt) {
    const std::string prompt = opt.prompt_file.empty() ? opt.prompt : read_text_file(opt.prompt_file);
    if (prompt.empty()) fail("the prompt is empty: give text with -p TEXT or -f FILE");
    if (opt.n_predict < 0) fail("-n must be >= 0, got ", opt.n_predict);
    const bool print_logprobs = opt.logprobs >= 0;
    if (!opt.seed_given) opt.sampling.seed = std::random_device{}();
    opt.sampling.validate();

    const std::string model_path = opt.model_path.empty() ? default_model_path() : opt.model_path;
    const auto model = Model::load(model_path);
    const auto tokenizer = Tokenizer::from_gguf(model->gguf());
    const std::vector<int32_t> prompt_tokens = tokenizer->encode(prompt, tokenizer->add_bos_default());
    if (prompt_tokens.empty()) fail("the prompt encodes to no tokens");
    if (opt.logprobs > tokenizer->n_vocab()) {
        fail("--logprobs ", opt.logprobs, " is more than the vocabulary's ", tokenizer->n_vocab(), " tokens");
    }

    BackendOptions backend_options;
    backend_options.n_threads = opt.n_threads;
    const auto backend = make_backend(parse_device(opt.device), *model, backend_options);
    const int seq = 0;

    // Time to first token counts everything between the prompt's tokens and the first sampled token: opening
    // the cache, lookup and restore, the prefill, the first sampling.
    const auto prefill_start = std::chrono::steady_clock::now();
    const auto prefix_store = open_prefix_store(opt.cache, *model, [](const std::string& message) {
        std::fprintf(stderr, "dendro: warning: %s\n", message.c_str());
    });

    std::vector<float> logits(static_cast<size_t>(model->hparams().n_vocab));
    std::optional<CachedPrefill> cached_prefill;
    if (print_logprobs) {
        print_logprob_line(*tokenizer, 0, prompt_tokens.front(), nullptr, kPromptSource);
        prefill_with_logprobs(*backend, seq, prompt_tokens, opt.logprobs, logits,
                              [&](size_t pos, const PositionLogprobs& logprobs) {
                                  print_logprob_line(*tokenizer, pos, prompt_tokens[pos], &logprobs, kPromptSource);
                              });
    } else {
        cached_prefill.emplace(prefill_with_cache(*backend, seq, prompt_tokens, prefix_store.get(),
                                                  opt.cache.checkpoint_every, logits));
    }
    const double prefill_seconds = seconds_since(prefill_start);

    TokenObserver on_token;
    std::function<void(std::string_view)> on_text = [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
    };
    if (print_logprobs) {
        on_text = [](std::string_view) {};  // stdout carries the JSON lines only
        on_token = [&, pos = prompt_tokens.size()](int32_t token, std::span<const float> token_logits) mutable {
            const PositionLogprobs logprobs = position_logprobs(token_logits, token, opt.logprobs);
            print_logprob_line(*tokenizer, pos++, token, &logprobs, kGeneratedSource);
        };
    } else {
        std::fputs(prompt.c_str(), stdout);
        std::fflush(stdout);
    }
    const GenerationResult result = generate(*backend, *tokenizer, seq, logits, prompt_tokens, opt.sampling,
                                             opt.n_predict, on_text, /*stop_at_eog=*/true, on_token);
    if (!print_logprobs) {
        std::fputc('\n', stdout);
        std::fflush(stdout);
    }

    // Prompt speed counts the tokens actually run through the model: restored ones cost no compute.
    const int64_t restored_tokens = cached_prefill ? cached_prefill->reused_tokens() : 0;
    const int64_t computed_tokens = static_cast<int64_t>(prompt_tokens.size()) - restored_tokens;
    // "(R restored, C computed, X tok/s)": the rate only for computed tokens (a full restore has none).
    std::string prompt_note = restored_tokens > 0 ? concat(restored_tokens, " restored, ", computed_tokens, " computed") : "";
    if (computed_tokens > 0) {
        char rate[32];
        std::snprintf(rate, sizeof rate, "%.1f tok/s", per_second(static_cast<double>(computed_tokens), prefill_seconds));
        prompt_note += (prompt_note.empty() ? "" : ", ") + std::string(rate);
    }
    const double decode_rate = per_second(static_cast<double>(result.decode_steps), result.decode_seconds);
    const double weight_gbps = decode_rate * static_cast<double>(backend->weight_bytes_per_token()) / 1e9;
    std::fprintf(stderr,
                 "dendro: prompt %zu tok (%s), first token after %.3f s | generated %zu tok in %.3f s (%.1f tok/s, "
                 "%.2f GB/s of weights) | %s, seed %llu\n",
                 prompt_tokens.size(), prompt_note.c_str(), prefill_seconds + result.first_token_seconds,
                 result.tokens.size(), result.decode_seconds, decode_rate, weight_gbps,
                 backend->name().c_str(), static_cast<unsigned long long>(opt.sampling.seed));
    if (prefix_store && cached_prefill) {
        const CachedPrefillStats& cache_stats = cached_prefill->finish();  // the prompt's state is saved by now
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
    non_empty_path(cmd->add_option("-m,--model", opt->model_path, "GGUF model file (default: the bundled model)"));
    auto* prompt = cmd->add_option("-p,--prompt", opt->prompt, "Prompt text");
    auto* file = non_empty_path(cmd->add_option("-f,--file", opt->prompt_file, "Read the prompt from this file"));
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
    cmd->add_option_function<std::string>(
        "-s,--seed",
        [opt](const std::string& text) {
            opt->sampling.seed = parse_uint64_flag("--seed", text);
            opt->seed_given = true;
        },
        "RNG seed, 0 to 2^64-1 (default: random, printed in the closing stats)")
        ->type_name("UINT");
    add_thread_count_option(cmd, opt->n_threads);
    cmd->add_option("--device", opt->device, "auto, cpu or cuda")->capture_default_str();
    auto* prompt_cache =
        non_empty_path(cmd->add_option("--prompt-cache", opt->cache.prompt_cache_file,
                                       "Resume from the prompt state saved in FILE when it holds a prefix of this "
                                       "prompt; save this prompt's state there otherwise"))
            ->type_name("FILE");
    auto* cache_dir = non_empty_path(cmd->add_option("--cache-dir", opt->cache.cache_dir,
                                                     "Automatic prefix cache directory, shareable between runs and "
                                                     "processes (inspect it with `dendro cache`)"))
                         ->type_name("DIR");
    cache_dir->excludes(prompt_cache);
    // Restored prompt tokens have no logits to report, so the prompt caches are off with --logprobs.
    cmd->add_option("--logprobs", opt->logprobs,
                    "Print JSON lines instead of text (stdout then carries nothing else), one per prompt and "
                    "generated token: {pos, id, text, [bytes], logprob, top: [{id, text, logprob}] x N, source: "
                    "prompt|generated}; log-probabilities of the raw logits, null for the first prompt token; "
                    "\"bytes\" lists a token's bytes when they are not UTF-8 on their own (\"text\" has U+FFFD). "
                    "Not with --prompt-cache/--cache-dir: restored tokens have no logits")
        ->type_name("N")
        ->check(CLI::NonNegativeNumber)
        ->excludes(prompt_cache)
        ->excludes(cache_dir);
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
