// dendro cache ls|info|rm|clear DIR: inspect and prune a prefix cache directory (see `dendro run --cache-dir`).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "byte_size.h"
#include "commands.h"
#include "error.h"
#include "prefix_cache.h"
#include "state_file.h"

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
    std::printf("shapes:    n_layer %lld, d_conv %lld, d_inner %lld, d_state %lld, n_vocab %lld\n",
                static_cast<long long>(h.n_layer), static_cast<long long>(h.d_conv),
                static_cast<long long>(h.d_inner), static_cast<long long>(h.d_state),
                static_cast<long long>(h.n_vocab));
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

}  // namespace

void add_cache_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("cache", "Inspect and prune a prefix cache directory (run --cache-dir)");
    cmd->require_subcommand(1);

    auto dir = std::make_shared<std::string>();
    auto ids = std::make_shared<std::vector<std::string>>();

    CLI::App* ls = cmd->add_subcommand("ls", "List the entries, most recently used first");
    ls->add_option("DIR", *dir, "Cache directory")->required();
    ls->callback([dir] { list(*dir); });

    CLI::App* info = cmd->add_subcommand("info", "Summarize the cache, or describe and verify one entry");
    info->add_option("DIR", *dir, "Cache directory")->required();
    auto entry = std::make_shared<std::string>();
    info->add_option("ENTRY", *entry, "Entry id or a unique prefix of it");
    info->callback([dir, entry] { entry->empty() ? summary(*dir) : entry_info(*dir, *entry); });

    CLI::App* rm = cmd->add_subcommand("rm", "Remove entries");
    rm->add_option("DIR", *dir, "Cache directory")->required();
    rm->add_option("ENTRY", *ids, "Entry ids or unique prefixes of them")->required();
    rm->callback([dir, ids] { remove(*dir, *ids); });

    CLI::App* clear_cmd = cmd->add_subcommand("clear", "Remove every entry");
    clear_cmd->add_option("DIR", *dir, "Cache directory")->required();
    clear_cmd->callback([dir] { clear(*dir); });
}

}  // namespace dendro::cli
