// Somewhere the states of prompt prefixes are kept between runs: a single prompt-cache file
// (PromptCacheFile) or a shared, size-bounded cache directory (PrefixCache). A store never makes a run fail:
// an unreadable, foreign or corrupt entry is reported through the warning sink and treated as a miss.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "model/model.h"
#include "cache/state_snapshot.h"

namespace dendro {

// Receives one line of text per problem (the CLI prints it as "dendro: warning: ..."). It may be called from
// the thread that writes checkpoints (never from two threads at once).
using WarningSink = std::function<void(const std::string& message)>;

class PrefixStore {
public:
    explicit PrefixStore(WarningSink warn) : warn_(std::move(warn)) {}
    virtual ~PrefixStore() = default;

    // The snapshot of the longest stored prefix of `tokens` (1 to tokens.size() tokens), or nullopt.
    virtual std::optional<StateSnapshot> longest_prefix(std::span<const int32_t> tokens) = 0;
    // Keeps a snapshot; `end_of_prompt` is false for a checkpoint taken inside a prompt. Returns whether it
    // was written (false when the store holds it already or does not keep it). Throws dendro::Error when it
    // cannot be written.
    virtual bool store(const StateSnapshot& snapshot, bool end_of_prompt) = 0;
    // Whether checkpoints inside a prompt are worth storing here.
    virtual bool keeps_checkpoints() const = 0;

    void warn(const std::string& message) const {
        if (warn_) warn_(message);
    }

private:
    WarningSink warn_;
};

inline constexpr int64_t kDefaultCheckpointEvery = 512;
inline constexpr uint64_t kDefaultPrefixCacheBytes = uint64_t{2} << 30;

// How a run asks for prompt caching (the CLI's --prompt-cache / --cache-dir / --cache-every / --cache-size).
struct PromptCacheOptions {
    std::string prompt_cache_file;  // one saved prompt state
    std::string cache_dir;          // or an automatic prefix cache directory
    int64_t checkpoint_every = kDefaultCheckpointEvery;  // cache directory: a checkpoint every this many tokens (0 = none)
    uint64_t max_bytes = kDefaultPrefixCacheBytes;      // cache directory: size bound (LRU eviction)
};

// The store the options ask for (fingerprinting the model), or nullptr when they ask for none. Throws
// dendro::Error for contradictory or invalid options or an unusable cache directory.
std::unique_ptr<PrefixStore> open_prefix_store(const PromptCacheOptions& options, const Model& model,
                                               WarningSink warn);

}  // namespace dendro
