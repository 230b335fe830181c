#include "convert_cli.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "hf_reference.h"
#include "safetensors.h"

namespace dendro::test {

namespace fs = std::filesystem;

CommandResult convert(const std::string& model_dir, const std::string& out, const std::string& extra) {
    return run_command(std::string(DENDRO_EXE) + " convert " + shell_quote(model_dir) + " -o " + shell_quote(out) +
                       " " + extra);
}

std::string copy_fixture(const std::string& fixture, const TempDir& tmp) {
    const std::string dir = tmp.file(fixture);
    fs::copy(hf_fixture_dir(fixture), dir, fs::copy_options::recursive);
    for (const auto& entry : fs::directory_iterator(dir)) {
        fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
    }
    return dir;
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json config = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
    edit(config);
    std::ofstream(dir + "/config.json") << config.dump(2);
}

void edit_weights(const std::string& dir, const std::function<void(SafetensorsBuilder&)>& edit) {
    SafetensorsBuilder builder;
    {
        const auto file = SafetensorsFile::open(dir + "/model.safetensors");
        for (const SafetensorsTensor& t : file->tensors()) builder.add(t.name, t.dtype, t.shape, t.data);
    }
    edit(builder);
    write_file(dir + "/model.safetensors", builder.bytes());
}

void expect_failure(const std::string& model_dir, const std::vector<std::string>& parts, const std::string& extra) {
    const TempDir out_dir;
    const CommandResult r = convert(model_dir, out_dir.file("out.gguf"), extra);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("dendro: error: ", 0), 0u) << r.err;
    for (const std::string& part : parts) EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
    EXPECT_TRUE(out_dir.entries().empty()) << "output directory not empty after a failed conversion";
}

}  // namespace dendro::test
