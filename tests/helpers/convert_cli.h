// `dendro convert` as the CLI runs it, on writable copies of the HF fixtures of tests/data/hf that a test
// edits (config.json keys, safetensors tensors) to check what the converter accepts and what it refuses.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_command.h"
#include "safetensors_builder.h"
#include "temp_dir.h"

namespace dendro::test {

// `dendro convert MODEL_DIR -o OUT EXTRA`.
CommandResult convert(const std::string& model_dir, const std::string& out, const std::string& extra = "");

// A writable copy of the fixture tests/data/hf/<fixture> in `tmp`; returns its path.
std::string copy_fixture(const std::string& fixture, const TempDir& tmp);

// Rewrites DIR/config.json after `edit` changes it.
void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit);

// Rewrites DIR/model.safetensors after `edit` changes its tensors or header.
void edit_weights(const std::string& dir, const std::function<void(SafetensorsBuilder&)>& edit);

// Runs a conversion expected to fail: exit status 1, one error line containing every part, and nothing
// left in the output directory.
void expect_failure(const std::string& model_dir, const std::vector<std::string>& parts, const std::string& extra = "");

}  // namespace dendro::test
