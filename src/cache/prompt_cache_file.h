// `--prompt-cache FILE`: one saved prompt state. When the file holds a prefix of this prompt (saved for
// this model), that prefix is restored; after a prompt that did not fully hit, the file is rewritten with
// the new prompt's state. No checkpoints: the file holds exactly one state. A path that exists and is not a
// Dendro state file (no state-file magic: the user's text, a model, a directory, a FIFO, a device, a symlink
// to one of those) is never written: a warning, and the prompt is computed as without a cache. A symlink to a
// state file updates the file it names.
#pragma once

#include <optional>
#include <string>

#include "model/model.h"
#include "model/model_fingerprint.h"
#include "cache/prefix_store.h"

namespace dendro {

class PromptCacheFile : public PrefixStore {
public:
    PromptCacheFile(std::string path, const ModelFingerprint& model, const ModelHparams& hparams, WarningSink warn);

    std::optional<StateSnapshot> longest_prefix(std::span<const int32_t> tokens) override;
    bool store(const StateSnapshot& snapshot, bool end_of_prompt) override;
    bool keeps_checkpoints() const override { return false; }

private:
    // Where this prompt's state may be written: the path when nothing is there, the state file it names when
    // it is one (of any version, even damaged), nullopt when it is anything else.
    std::optional<std::string> save_path() const;
    void warn_left_alone(const std::string& problem);

    std::string path_;
    ModelFingerprint model_;
    ModelHparams hparams_;
    bool warned_left_alone_ = false;
};

}  // namespace dendro
