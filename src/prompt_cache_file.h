// `--prompt-cache FILE`: one saved prompt state. When the file holds a prefix of this prompt (saved for
// this model), that prefix is restored; after a prompt that did not fully hit, the file is rewritten with
// the new prompt's state. No checkpoints: the file holds exactly one state.
#pragma once

#include <string>

#include "model.h"
#include "model_fingerprint.h"
#include "prefix_store.h"

namespace dendro {

class PromptCacheFile : public PrefixStore {
public:
    PromptCacheFile(std::string path, const ModelFingerprint& model, const MambaHparams& hparams, WarningSink warn);

    std::optional<StateSnapshot> longest_prefix(std::span<const int32_t> tokens) override;
    void store(const StateSnapshot& snapshot, bool end_of_prompt) override;
    bool keeps_checkpoints() const override { return false; }

private:
    std::string path_;
    ModelFingerprint model_;
    MambaHparams hparams_;
};

}  // namespace dendro
