// dendro tokenize: print the token ids a model's vocabulary gives a text, space-separated on one line.
// An empty text prints an empty line (or just the BOS id when BOS is added): unlike `run`, there is nothing
// wrong with asking how "" tokenizes.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "bundled_model.h"
#include "commands.h"
#include "flag_checks.h"
#include "text_input.h"
#include "common/error.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

namespace dendro::cli {
namespace {

struct TokenizeOptions {
    std::string model_path;
    std::string text;
    std::string text_file;
    std::optional<bool> add_bos;  // unset: as the vocabulary says
};

void tokenize(const TokenizeOptions& opt) {
    const std::string text = opt.text_file.empty() ? opt.text : read_text_file(opt.text_file);
    const std::string model_path = opt.model_path.empty() ? default_model_path() : opt.model_path;
    const auto file = GgufFile::open(model_path);
    const auto tokenizer = Tokenizer::from_gguf(*file);
    if (opt.add_bos.value_or(false) && tokenizer->bos() < 0) {
        fail(model_path, ": --bos given but the vocabulary has no BOS token");
    }
    const std::vector<int32_t> ids = tokenizer->encode(text, opt.add_bos.value_or(tokenizer->add_bos_default()));
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) line += ' ';
        line += std::to_string(ids[i]);
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
    auto opt = std::make_shared<TokenizeOptions>();
    CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text, space-separated on one line");
    non_empty_path(
        cmd->add_option("-m,--model", opt->model_path, "GGUF model or vocabulary file (default: the bundled model)"));
    auto* text = cmd->add_option("-p,--prompt", opt->text, "Text to tokenize");
    auto* file = non_empty_path(
        cmd->add_option("-f,--file", opt->text_file, "Read the text from this file (bytes as they are)"));
    text->excludes(file);
    cmd->add_flag_function(
        "--bos,!--no-bos", [opt](int64_t count) { opt->add_bos = count > 0; },
        "Add (or do not add) the BOS token (default: as the vocabulary says)");
    cmd->callback([opt, cmd] {
        if (cmd->count("--prompt") == 0 && cmd->count("--file") == 0) {
            fail("tokenize: give the text with -p TEXT or -f FILE");
        }
        tokenize(*opt);
    });
}

}  // namespace dendro::cli
