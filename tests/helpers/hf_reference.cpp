#include "hf_reference.h"

#include <cstring>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "run_command.h"

namespace dendro::test {
namespace {

std::vector<float> read_f32_file(const std::string& path) {
    const std::vector<uint8_t> bytes = read_file(path);
    std::vector<float> values(bytes.size() / sizeof(float));
    std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
    return values;
}

}  // namespace

std::string hf_fixture_dir(const std::string& fixture) { return std::string(DENDRO_TEST_DATA) + "/hf/" + fixture; }

HfReference load_hf_reference(const std::string& fixture) {
    const std::string dir = hf_fixture_dir(fixture);
    std::ifstream in(dir + "/reference.json");
    const nlohmann::json json = nlohmann::json::parse(in);
    HfReference ref;
    ref.fixture = fixture;
    ref.stored_dtype = json.at("stored_dtype").get<std::string>();
    if (!json.at("vocab_dir").is_null()) ref.vocab_dir = dir + "/" + json.at("vocab_dir").get<std::string>();
    ref.n_vocab = json.at("n_vocab").get<int64_t>();
    for (const nlohmann::json& p : json.at("prompts")) {
        HfPromptReference prompt;
        prompt.text = p.at("text").get<std::string>();
        prompt.ids = p.at("ids").get<std::vector<int32_t>>();
        prompt.logit_positions = p.at("logit_positions").get<std::vector<int64_t>>();
        prompt.continuation = p.at("continuation").get<std::vector<int32_t>>();
        prompt.logits = read_f32_file(dir + "/" + p.at("logits_file").get<std::string>());
        EXPECT_EQ(prompt.logits.size(), prompt.logit_positions.size() * static_cast<size_t>(ref.n_vocab));
        ref.prompts.push_back(std::move(prompt));
    }
    return ref;
}

std::string convert_hf_fixture(const HfReference& ref, const std::string& outtype, const TempDir& tmp) {
    const std::string out = tmp.file(ref.fixture + "-" + outtype + ".gguf");
    std::string command = shell_quote(DENDRO_EXE) + " convert " + shell_quote(hf_fixture_dir(ref.fixture)) + " -o " +
                          shell_quote(out) + " --outtype " + outtype;
    if (!ref.vocab_dir.empty()) command += " --vocab " + shell_quote(ref.vocab_dir);
    const CommandResult result = run_command(command);
    EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.err;
    return out;
}

}  // namespace dendro::test
