// dendro info: what a GGUF file holds — format details, architecture, hyper-parameters, general.* metadata,
// a tokenizer summary and the tensor table. Reads the keys directly, so it also works on files that are not
// loadable models.
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "common/byte_size.h"
#include "commands.h"
#include "common/error.h"
#include "flag_checks.h"
#include "format/gguf.h"
#include "tokenizer/vocab.h"

namespace dendro::cli {
namespace {

constexpr std::string_view kGeneralPrefix = "general.";
constexpr std::string_view kTokenizerPrefix = "tokenizer.";
constexpr const char* kArchitectureKey = "general.architecture";
// Longest array shown element by element; longer ones (vocabularies, merges) are summarized.
constexpr size_t kShownArrayElements = 8;

void print_key_value(const GgufKeyValue& kv) {
    std::printf("  %-40s = %s\n", kv.key.c_str(), gguf_value_to_string(kv.value, kShownArrayElements).c_str());
}

void print_keys_with_prefix(const GgufFile& file, std::string_view prefix) {
    for (const GgufKeyValue& kv : file.kvs()) {
        if (kv.key.starts_with(prefix)) print_key_value(kv);
    }
}

std::string optional_uint(const GgufFile& file, const char* key) {
    const auto value = file.get_uint_opt(key);
    return value ? std::to_string(*value) : std::string("(none)");
}

void print_tokenizer(const GgufFile& file) {
    std::printf("\ntokenizer:\n");
    const auto model = file.get_string_opt(vocab_key::kModel);
    std::printf("  %-40s %s\n", "model", model ? model->c_str() : "(none)");
    const GgufValue* tokens = file.find(vocab_key::kTokens);
    std::printf("  %-40s %s\n", "vocab size", tokens ? std::to_string(tokens->array_size()).c_str() : "(none)");
    std::printf("  %-40s %s\n", "bos token id", optional_uint(file, vocab_key::kBosId).c_str());
    std::printf("  %-40s %s\n", "eos token id", optional_uint(file, vocab_key::kEosId).c_str());
    for (const GgufKeyValue& kv : file.kvs()) {
        if (!kv.key.starts_with(kTokenizerPrefix) || kv.key == vocab_key::kModel || kv.key == vocab_key::kTokens ||
            kv.key == vocab_key::kBosId || kv.key == vocab_key::kEosId) {
            continue;
        }
        print_key_value(kv);
    }
}

void print_other_keys(const GgufFile& file, std::string_view arch_prefix) {
    bool header_printed = false;
    for (const GgufKeyValue& kv : file.kvs()) {
        if (kv.key.starts_with(kGeneralPrefix) || kv.key.starts_with(kTokenizerPrefix) ||
            (!arch_prefix.empty() && kv.key.starts_with(arch_prefix))) {
            continue;
        }
        if (!header_printed) std::printf("\nother keys:\n");
        header_printed = true;
        print_key_value(kv);
    }
}

void print_tensors(const GgufFile& file) {
    uint64_t total = 0;
    for (const GgufTensorInfo& info : file.tensors()) total += info.nbytes;
    std::printf("\ntensors: %zu, %s\n", file.tensors().size(), format_byte_size(total).c_str());
    if (file.tensors().empty()) return;
    std::printf("  %-44s %-6s %-24s %14s\n", "name", "type", "shape", "bytes");
    for (const GgufTensorInfo& info : file.tensors()) {
        std::printf("  %-44s %-6s %-24s %14llu\n", info.name.c_str(), ggml_type_name(info.type).c_str(),
                    info.shape_string().c_str(), static_cast<unsigned long long>(info.nbytes));
    }
}

void print_info(const std::string& path) {
    const auto file = GgufFile::open(path);
    std::printf("file: %s (%s)\n", path.c_str(), format_byte_size(file->bytes().size()).c_str());
    std::printf("GGUF version %u, alignment %zu, %zu keys, %zu tensors\n", file->version(), file->alignment(),
                file->kvs().size(), file->tensors().size());
    const auto architecture = file->get_string_opt(kArchitectureKey);
    std::printf("architecture: %s\n", architecture ? architecture->c_str() : "(none)");
    const std::string arch_prefix = architecture ? *architecture + "." : std::string();
    if (architecture) {
        std::printf("\nhyper-parameters (%s*):\n", arch_prefix.c_str());
        print_keys_with_prefix(*file, arch_prefix);
    }
    std::printf("\ngeneral:\n");
    print_keys_with_prefix(*file, kGeneralPrefix);
    print_tokenizer(*file);
    print_other_keys(*file, arch_prefix);
    print_tensors(*file);
}

}  // namespace

void add_info_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("info", "Show a GGUF file's metadata, hyper-parameters, tokenizer and tensors");
    auto path = std::make_shared<std::string>();
    non_empty_path(cmd->add_option("FILE", *path, "GGUF file"))->required();
    cmd->callback([path] { print_info(*path); });
}

}  // namespace dendro::cli
