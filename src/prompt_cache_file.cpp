#include "prompt_cache_file.h"

#include <algorithm>
#include <filesystem>

#include "error.h"
#include "state_file.h"

namespace dendro {

PromptCacheFile::PromptCacheFile(std::string path, const ModelFingerprint& model, const MambaHparams& hparams,
                                 WarningSink warn)
    : PrefixStore(std::move(warn)), path_(std::move(path)), model_(model), hparams_(hparams) {}

std::optional<StateSnapshot> PromptCacheFile::longest_prefix(std::span<const int32_t> tokens) {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return std::nullopt;  // the first run creates it
    StateSnapshot snapshot;
    try {
        snapshot = read_state_file(path_, model_);
    } catch (const Error& e) {
        warn(concat(e.what(), "; computing the prompt instead"));
        return std::nullopt;
    }
    if (!snapshot.fits(hparams_)) {
        warn(concat("state file ", path_, ": its shapes do not fit this model; computing the prompt instead"));
        return std::nullopt;
    }
    const bool is_prefix = snapshot.tokens.size() <= tokens.size() &&
                           std::equal(snapshot.tokens.begin(), snapshot.tokens.end(), tokens.begin());
    if (!is_prefix) return std::nullopt;  // saved for another prompt: it is replaced after this one
    return snapshot;
}

void PromptCacheFile::store(const StateSnapshot& snapshot, bool end_of_prompt) {
    if (end_of_prompt) write_state_file(path_, model_, snapshot);
}

}  // namespace dendro
