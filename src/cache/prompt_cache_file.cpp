#include "cache/prompt_cache_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "common/error.h"
#include "cache/state_file.h"

namespace dendro {

PromptCacheFile::PromptCacheFile(std::string path, const ModelFingerprint& model, const ModelHparams& hparams,
                                 WarningSink warn)
    : PrefixStore(std::move(warn)), path_(std::move(path)), model_(model), hparams_(hparams) {}

std::optional<std::string> PromptCacheFile::save_path() const {
    struct stat link {};
    if (::lstat(path_.c_str(), &link) != 0) {
        if (errno == ENOENT) return path_;  // the first run creates it
        return std::nullopt;                // not even lstat-able: not ours to write
    }
    if (!starts_with_state_file_magic(path_)) return std::nullopt;  // follows symlinks; never blocks
    if (!S_ISLNK(link.st_mode)) return path_;
    std::error_code ec;  // write the state file the link names, keeping the user's link
    const std::filesystem::path target = std::filesystem::canonical(path_, ec);
    if (ec) return std::nullopt;
    return target.string();
}

void PromptCacheFile::warn_left_alone(const std::string& problem) {
    warn(concat(problem, "; it is not a Dendro state file, so it will not be overwritten: computing the prompt "
                         "without saving it"));
    warned_left_alone_ = true;
}

std::optional<StateSnapshot> PromptCacheFile::longest_prefix(std::span<const int32_t> tokens) {
    struct stat link {};
    if (::lstat(path_.c_str(), &link) != 0 && errno == ENOENT) return std::nullopt;  // the first run creates it
    StateSnapshot snapshot;
    try {
        snapshot = read_state_file(path_, model_);
    } catch (const Error& e) {
        if (save_path()) {
            warn(concat(e.what(), "; computing the prompt instead"));  // ours: replaced after this prompt
        } else {
            warn_left_alone(e.what());
        }
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

bool PromptCacheFile::store(const StateSnapshot& snapshot, bool end_of_prompt) {
    if (!end_of_prompt) return false;
    // Looked at again just before writing: what is there may have changed since the lookup.
    const std::optional<std::string> target = save_path();
    if (!target) {
        if (!warned_left_alone_) warn_left_alone(concat("prompt cache ", path_));
        return false;
    }
    write_state_file(*target, model_, snapshot);
    return true;
}

}  // namespace dendro
