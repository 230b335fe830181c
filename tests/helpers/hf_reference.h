// The HF transformers references of tests/data/hf (tools/make_hf_fixtures.py): per fixture checkpoint, prompts
// with their token ids, HF's fp32 logits at listed positions and HF's greedy continuation; and the checkpoint
// converted with `dendro convert`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "temp_dir.h"

namespace dendro::test {

struct HfPromptReference {
    std::string text;
    std::vector<int32_t> ids;
    std::vector<int64_t> logit_positions;
    std::vector<float> logits;  // logit_positions.size() x n_vocab
    std::vector<int32_t> continuation;
};

struct HfReference {
    std::string fixture;
    std::string stored_dtype;
    std::string vocab_dir;  // empty: the checkpoint's own tokenizer
    int64_t n_vocab = 0;
    std::vector<HfPromptReference> prompts;
};

std::string hf_fixture_dir(const std::string& fixture);  // tests/data/hf/<fixture>
HfReference load_hf_reference(const std::string& fixture);

// Converts the fixture with `dendro convert --outtype outtype` into `tmp` (gtest failure when it fails) and
// returns the GGUF's path.
std::string convert_hf_fixture(const HfReference& ref, const std::string& outtype, const TempDir& tmp);

}  // namespace dendro::test
