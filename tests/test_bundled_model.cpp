// The bundled model: `dendro run` without -m finds it from any working directory, DENDRO_MODEL overrides
// it, and an installed prefix or a build tree next to the binary is searched before the source tree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/model.h"
#include "run_command.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace dendro {
namespace {

namespace fs = std::filesystem;

// The one *.gguf in models/: the bundled model.
fs::path bundled_model() {
    std::vector<fs::path> found;
    for (const auto& entry : fs::directory_iterator(DENDRO_MODELS_DIR)) {
        if (entry.path().extension() == ".gguf") found.push_back(entry.path());
    }
    if (found.size() != 1) ADD_FAILURE() << "expected exactly one bundled model in " << DENDRO_MODELS_DIR;
    return found.empty() ? fs::path() : found.front();
}

// `dendro run` from `cwd`, with DENDRO_MODEL set to `model_env` (unset when empty).
test::CommandResult run_without_model_flag(const std::string& exe, const std::string& cwd,
                                           const std::string& model_env = "") {
    const std::string env = model_env.empty() ? "env -u DENDRO_MODEL " : "env DENDRO_MODEL=" + test::shell_quote(model_env) + " ";
    return test::run_command("cd " + test::shell_quote(cwd) + " && " + env + test::shell_quote(exe) +
                             " run -p 'ROMEO:' -n 24 --seed 5 --device cpu -t 2");
}

TEST(BundledModel, IsAShakespeareModelWithASentencePieceVocabulary) {
    const auto model = Model::load(bundled_model().string());
    const auto tokenizer = Tokenizer::from_gguf(model->gguf());
    EXPECT_EQ(tokenizer->model_name(), "llama");
    EXPECT_TRUE(tokenizer->add_bos_default());
    EXPECT_GE(tokenizer->bos(), 0);
    const std::string verse = "ROMEO:\nBut soft, what light through yonder window breaks?\n";
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(verse, false)), verse);
}

TEST(BundledModel, RunFindsItFromAnotherDirectory) {
    const test::TempDir elsewhere;
    const test::CommandResult run = run_without_model_flag(DENDRO_EXE, elsewhere.path());
    ASSERT_EQ(run.exit_code, 0) << run.err;
    ASSERT_EQ(run.out.rfind("ROMEO:", 0), 0u) << run.out;
    EXPECT_GT(run.out.size(), std::string("ROMEO:\n").size()) << run.out;
}

TEST(BundledModel, DendroModelVariableOverridesIt) {
    const test::TempDir dir;
    const test::CommandResult missing = run_without_model_flag(DENDRO_EXE, dir.path(), dir.file("missing.gguf"));
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("DENDRO_MODEL"), std::string::npos) << missing.err;
    EXPECT_NE(missing.err.find("missing.gguf"), std::string::npos) << missing.err;

    const std::string not_a_model = dir.file("not_a_model.gguf");
    std::ofstream(not_a_model) << "this is not a GGUF file";
    const test::CommandResult bad = run_without_model_flag(DENDRO_EXE, dir.path(), not_a_model);
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("not_a_model.gguf"), std::string::npos) << bad.err;
}

// A copy of the binary at `bin_dir`/dendro with a decoy (not a GGUF) where the bundled model is expected;
// the error naming the decoy shows that this place is searched before the source tree.
void expect_searched_before_source_tree(const fs::path& bin_dir, const fs::path& models_dir) {
    fs::create_directories(bin_dir);
    fs::create_directories(models_dir);
    fs::copy_file(DENDRO_EXE, bin_dir / "dendro");
    const fs::path decoy = models_dir / bundled_model().filename();
    std::ofstream(decoy) << "decoy";
    const test::CommandResult run = run_without_model_flag((bin_dir / "dendro").string(), bin_dir.string());
    EXPECT_NE(run.exit_code, 0);
    EXPECT_NE(run.err.find(decoy.lexically_normal().string()), std::string::npos) << run.err;
}

TEST(BundledModel, InstallPrefixIsSearched) {
    const test::TempDir prefix;
    expect_searched_before_source_tree(fs::path(prefix.path()) / "bin",
                                       fs::path(prefix.path()) / "share" / "dendro" / "models");
}

TEST(BundledModel, BuildTreeIsSearched) {
    const test::TempDir source;
    expect_searched_before_source_tree(fs::path(source.path()) / "build" / "bin", fs::path(source.path()) / "models");
}

}  // namespace
}  // namespace dendro
