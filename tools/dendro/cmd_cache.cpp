// dendro cache ls|info|rm|clear DIR: inspect and prune a prefix cache directory (see `dendro run --cache-dir`).
// dendro cache bench DIR -m MODEL: time to first token with a cached prompt prefix against a cold prefill, and
// the time to save and restore one state, through a scratch cache in DIR.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/byte_size.h"
#include "cache/cached_prefill.h"
#include "commands.h"
#include "flag_checks.h"
#include "measure.h"
#include "common/error.h"
#include "model/model.h"
#include "cache/prefix_cache.h"
#include "cache/state_file.h"

namespace dendro::cli {
namespace {

std::string format_time(std::filesystem::file_time_type when) {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::file_clock::to_sys(
        std::chrono::time_point_cast<std::chrono::file_clock::duration>(when)));
    std::tm local{};
    localtime_r(&t, &local);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
    return text;
}

uint64_t total_bytes(const std::vector<CacheEntry>& entries) {
    uint64_t total = 0;
    for (const CacheEntry& e : entries) total += e.bytes;
    return total;
}

void list(const std::string& dir) {
    std::vector<CacheEntry> entries = CacheDirectory::open(dir, false).entries();
    std::sort(entries.begin(), entries.end(),
              [](const CacheEntry& a, const CacheEntry& b) { return a.last_used > b.last_used; });
    std::printf("%-60s %8s %11s  %s\n", "ENTRY", "TOKENS", "SIZE", "LAST USED");
    for (const CacheEntry& e : entries) {
        const std::string version = e.version == kStateFileVersion ? "" : concat("  (format v", e.version, ")");
        std::printf("%-60s %8lld %11s  %s%s\n", e.id.c_str(), static_cast<long long>(e.n_tokens),
                    format_byte_size(e.bytes).c_str(), format_time(e.last_used).c_str(), version.c_str());
    }
    std::printf("%zu entries, %s\n", entries.size(), format_byte_size(total_bytes(entries)).c_str());
}

void summary(const std::string& dir) {
    const CacheDirectory cache = CacheDirectory::open(dir, false);
    const std::vector<CacheEntry> entries = cache.entries();
    std::map<std::string, size_t> per_model;
    for (const CacheEntry& e : entries) ++per_model[e.model.hex()];
    std::printf("directory: %s\n", cache.path().string().c_str());
    std::printf("entries:   %zu (%s)\n", entries.size(), format_byte_size(total_bytes(entries)).c_str());
    for (const auto& [model, count] : per_model) std::printf("model %s: %zu entries\n", model.c_str(), count);
    if (!entries.empty()) {
        const auto [oldest, newest] = std::minmax_element(
            entries.begin(), entries.end(), [](const CacheEntry& a, const CacheEntry& b) { return a.last_used < b.last_used; });
        std::printf("used:      %s .. %s\n", format_time(oldest->last_used).c_str(),
                    format_time(newest->last_used).c_str());
    }
}

void entry_info(const std::string& dir, const std::string& id) {
    const CacheEntry e = CacheDirectory::open(dir, false).find(id);
    const StateFileHeader h = read_state_file_header(e.path.string());
    std::printf("entry:     %s\nfile:      %s\n", e.id.c_str(), e.path.string().c_str());
    std::printf("model:     %s\n", h.model.hex().c_str());
    std::printf("format:    version %u, %s\n", h.version, ggml_type_name(h.dtype).c_str());
    std::printf("tokens:    %lld\n", static_cast<long long>(h.n_tokens));
    std::printf("shapes:    %s, n_vocab %lld\n", h.shape.text().c_str(), static_cast<long long>(h.n_vocab));
    std::printf("size:      %s (%llu bytes)\n", format_byte_size(e.bytes).c_str(),
                static_cast<unsigned long long>(e.bytes));
    std::printf("last used: %s\n", format_time(e.last_used).c_str());
    read_state_file(e.path.string(), h.model);  // throws, naming the problem, unless the data is intact
    std::printf("checksum:  ok\n");
}

void remove(const std::string& dir, const std::vector<std::string>& ids) {
    const CacheDirectory cache = CacheDirectory::open(dir, false);
    std::vector<CacheEntry> victims;
    for (const std::string& id : ids) victims.push_back(cache.find(id));  // all resolved before any is removed
    cache.remove(victims);
    for (const CacheEntry& e : victims) std::printf("removed %s\n", e.id.c_str());
}

void clear(const std::string& dir) {
    const size_t removed = CacheDirectory::open(dir, false).clear();
    std::printf("removed %zu entries from %s\n", removed, dir.c_str());
}

struct CacheBenchOptions {
    std::string dir;
    std::string model_path;
    int64_t n_prefix = 8000;
    int64_t n_new = 32;
    int64_t checkpoint_every = kDefaultCheckpointEvery;
    int repetitions = 3;
    int n_threads = 0;
    std::string device = "auto";
};

// "mean ± sd s" over the repetitions.
std::string mean_sd(const std::vector<double>& seconds) {
    const MeanSd m = mean_and_sd(seconds);
    char text[64];
    std::snprintf(text, sizeof text, "%.4f ± %.4f s", m.mean, m.sd);
    return text;
}

void bench(const CacheBenchOptions& opt) {
    if (opt.n_prefix < 1 || opt.n_new < 1) fail("--prefix and --new must be >= 1");
    if (opt.repetitions < 1) fail("-r must be >= 1, got ", opt.repetitions);
    if (opt.checkpoint_every < 0) fail("--cache-every must be >= 0, got ", opt.checkpoint_every);
    std::error_code ec;
    // The benchmark clears its cache between repetitions and deletes it at the end: never a user's directory.
    if (std::filesystem::exists(opt.dir, ec)) fail(opt.dir, ": exists; give a new directory for the benchmark's cache");

    const auto model = Model::load(opt.model_path);
    const ModelHparams& hp = model->hparams();
    BackendOptions backend_options;
    backend_options.n_threads = opt.n_threads;
    const auto backend = make_backend(parse_device(opt.device), *model, backend_options);
    const auto fingerprint_start = std::chrono::steady_clock::now();
    const ModelFingerprint fingerprint = fingerprint_bytes(model->gguf().bytes());
    const double fingerprint_seconds = seconds_since(fingerprint_start);

    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(hp.n_vocab - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(opt.n_prefix + opt.n_new));
    for (int32_t& t : prompt) t = token(rng);
    const std::span<const int32_t> prefix = std::span<const int32_t>(prompt).first(static_cast<size_t>(opt.n_prefix));

    std::vector<std::string> warnings;
    PrefixCache cache(CacheDirectory::open(opt.dir, /*create=*/true), fingerprint, hp, UINT64_MAX,
                      [&warnings](const std::string& message) { warnings.push_back(message); });
    std::vector<float> cold_logits(static_cast<size_t>(hp.n_vocab)), logits(cold_logits.size());
    std::vector<double> cold, fill, warm, save, restore;
    float max_difference = 0.0f;  // 0: identical (see Backend::exact_prefill_split for when it is not)
    uint64_t file_bytes = 0;
    for (int r = 0; r < opt.repetitions; ++r) {
        backend->reset(0);
        auto start = std::chrono::steady_clock::now();
        backend->prefill(0, prompt, cold_logits, false);
        cold.push_back(seconds_since(start));

        cache.directory().clear();
        start = std::chrono::steady_clock::now();
        prefill_with_cache(*backend, 0, prefix, &cache, opt.checkpoint_every, logits).finish();
        fill.push_back(seconds_since(start));

        start = std::chrono::steady_clock::now();
        CachedPrefill warm_prefill = prefill_with_cache(*backend, 0, prompt, &cache, opt.checkpoint_every, logits);
        warm.push_back(seconds_since(start));  // the first token can be sampled now; the state is still saving
        warm_prefill.finish();
        if (warm_prefill.reused_tokens() != opt.n_prefix) fail("cache bench: the cached prefix was not found");
        for (size_t i = 0; i < logits.size(); ++i) {
            max_difference = std::max(max_difference, std::abs(logits[i] - cold_logits[i]));
        }

        const StateSnapshot snapshot = take_snapshot(*backend, 0, prompt, logits);
        file_bytes = state_file_size(snapshot);
        cache.directory().clear();
        start = std::chrono::steady_clock::now();
        cache.store(snapshot, /*end_of_prompt=*/true);
        save.push_back(seconds_since(start));

        start = std::chrono::steady_clock::now();
        const std::optional<StateSnapshot> hit = cache.longest_prefix(prompt);
        if (!hit) fail("cache bench: the saved state was not found");
        restore_snapshot(*backend, 0, *hit);
        restore.push_back(seconds_since(start));
    }
    std::filesystem::remove_all(opt.dir, ec);
    for (const std::string& w : warnings) std::fprintf(stderr, "dendro: warning: %s\n", w.c_str());

    const SequenceState state = SequenceState::zeros(hp);
    std::printf("model:        %s (%s, n_vocab %lld) on %s\n", model->name().c_str(), state.shape.text().c_str(),
                static_cast<long long>(hp.n_vocab), backend->name().c_str());
    std::printf("state:        %s per sequence (%zu conv + %zu ssm floats); state file of %lld tokens: %s\n",
                format_byte_size(state.bytes()).c_str(), state.conv.size(), state.ssm.size(),
                static_cast<long long>(prompt.size()), format_byte_size(file_bytes).c_str());
    std::printf("fingerprint:  %.4f s for %s (first run only; then memoized)\n", fingerprint_seconds,
                format_byte_size(model->gguf().bytes().size()).c_str());
    std::printf("cold prefill, %lld tokens:                      %s\n", static_cast<long long>(prompt.size()),
                mean_sd(cold).c_str());
    std::printf("prefill of the %lld-token prefix into the cache:   %s (checkpoints every %lld)\n",
                static_cast<long long>(opt.n_prefix), mean_sd(fill).c_str(), static_cast<long long>(opt.checkpoint_every));
    const std::string agreement =
        max_difference == 0.0f ? "identical to" : concat("within ", max_difference, " of");
    std::printf("cached prefix + %lld new tokens (time to first token): %s, logits %s the cold prefill's\n",
                static_cast<long long>(opt.n_new), mean_sd(warm).c_str(), agreement.c_str());
    std::printf("save one state:                                %s\n", mean_sd(save).c_str());
    std::printf("look up, read and restore one state:           %s\n", mean_sd(restore).c_str());
    std::printf("repetitions:  %d\n", opt.repetitions);
}

}  // namespace

void add_cache_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("cache", "Inspect and prune a prefix cache directory (run --cache-dir)");
    cmd->require_subcommand(1);

    auto dir = std::make_shared<std::string>();
    auto ids = std::make_shared<std::vector<std::string>>();

    CLI::App* ls = cmd->add_subcommand("ls", "List the entries, most recently used first");
    non_empty_path(ls->add_option("DIR", *dir, "Cache directory"))->required();
    ls->callback([dir] { list(*dir); });

    CLI::App* info = cmd->add_subcommand("info", "Summarize the cache, or describe and verify one entry");
    non_empty_path(info->add_option("DIR", *dir, "Cache directory"))->required();
    auto entry = std::make_shared<std::string>();
    info->add_option("ENTRY", *entry, "Entry id or a unique prefix of it");
    info->callback([dir, entry] { entry->empty() ? summary(*dir) : entry_info(*dir, *entry); });

    CLI::App* rm = cmd->add_subcommand("rm", "Remove entries");
    non_empty_path(rm->add_option("DIR", *dir, "Cache directory"))->required();
    rm->add_option("ENTRY", *ids, "Entry ids or unique prefixes of them")->required();
    rm->callback([dir, ids] { remove(*dir, *ids); });

    CLI::App* clear_cmd = cmd->add_subcommand("clear", "Remove every entry");
    non_empty_path(clear_cmd->add_option("DIR", *dir, "Cache directory"))->required();
    clear_cmd->callback([dir] { clear(*dir); });

    auto bench_opt = std::make_shared<CacheBenchOptions>();
    CLI::App* bench_cmd = cmd->add_subcommand(
        "bench", "Time to first token with a cached prompt prefix vs cold, and state save/restore times");
    non_empty_path(bench_cmd->add_option("DIR", bench_opt->dir,
                                         "New directory for the benchmark's scratch cache (deleted after)"))
        ->required();
    non_empty_path(bench_cmd->add_option("-m,--model", bench_opt->model_path, "GGUF model file"))->required();
    bench_cmd->add_option("--prefix", bench_opt->n_prefix, "Tokens of the cached prefix")->capture_default_str();
    bench_cmd->add_option("--new", bench_opt->n_new, "Tokens after the prefix")->capture_default_str();
    bench_cmd->add_option("--cache-every", bench_opt->checkpoint_every, "Checkpoint interval")->capture_default_str();
    bench_cmd->add_option("-r,--repetitions", bench_opt->repetitions, "Repetitions")->capture_default_str();
    add_thread_count_option(bench_cmd, bench_opt->n_threads);
    bench_cmd->add_option("--device", bench_opt->device, "auto, cpu or cuda")->capture_default_str();
    bench_cmd->callback([bench_opt] { bench(*bench_opt); });
}

}  // namespace dendro::cli
