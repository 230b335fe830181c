// dendro convert: a HuggingFace Mamba checkpoint directory -> GGUF, with a progress bar on stderr.
#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

#include "common/byte_size.h"
#include "commands.h"
#include "flag_checks.h"
#include "hf_converter.h"

namespace dendro::cli {
namespace {

constexpr size_t kProgressBarWidth = 40;

struct ConvertCommandOptions {
    std::string model_dir;
    std::string output_path;
    std::string out_type = "f16";
    std::string vocab_dir;
};

// A one-line bar redrawn in place on a terminal (nothing when stderr is a file or pipe, which would only
// collect the redraws); an error mid-conversion first ends the line so the message stands alone.
class ProgressBar {
public:
    void draw(size_t done, size_t total) {
        if (!interactive_) return;
        const size_t filled = total ? kProgressBarWidth * done / total : kProgressBarWidth;
        const std::string bar = std::string(filled, '=') + std::string(kProgressBarWidth - filled, ' ');
        std::fprintf(stderr, "\rconverting [%s] %zu/%zu tensors", bar.c_str(), done, total);
        open_ = done < total;
        if (!open_) std::fputc('\n', stderr);
        std::fflush(stderr);
    }
    void end_line() {
        if (open_) std::fputc('\n', stderr);
        open_ = false;
    }

private:
    bool interactive_ = isatty(STDERR_FILENO) != 0;
    bool open_ = false;
};

void run(const ConvertCommandOptions& opt) {
    ConvertOptions options;
    options.model_dir = opt.model_dir;
    options.output_path = opt.output_path;
    options.out_type = parse_out_type(opt.out_type, "--outtype");
    options.vocab_dir = opt.vocab_dir;
    ProgressBar bar;
    options.progress = [&bar](size_t done, size_t total) { bar.draw(done, total); };
    options.warn = [&bar](const std::string& message) {
        bar.end_line();
        std::fprintf(stderr, "dendro: warning: %s\n", message.c_str());
    };
    ConvertSummary summary;
    try {
        summary = convert_hf_to_gguf(options);
    } catch (...) {
        bar.end_line();
        throw;
    }
    std::printf("wrote %s: %lld tensors, %.2f M parameters, %s, outtype %s%s\n", opt.output_path.c_str(),
                static_cast<long long>(summary.n_tensors), static_cast<double>(summary.n_params) / 1e6,
                format_byte_size(summary.output_bytes).c_str(), out_type_name(options.out_type),
                summary.tied_output ? ", output tied to token_embd" : "");
}

}  // namespace

void add_convert_command(CLI::App& app) {
    auto opt = std::make_shared<ConvertCommandOptions>();
    CLI::App* cmd = app.add_subcommand("convert", "Convert a HuggingFace Mamba checkpoint directory to GGUF");
    non_empty_path(cmd->add_option("HF_DIR", opt->model_dir,
                                   "Checkpoint directory: config.json, *.safetensors, tokenizer files"))
        ->required();
    non_empty_path(cmd->add_option("-o,--output", opt->output_path, "GGUF file to write"))->required();
    cmd->add_option("--outtype", opt->out_type,
                    "Type of the weight matrices (q4_0 and the k-quant mixes as llama.cpp's quantizer makes them): " +
                        out_type_names())
        ->capture_default_str();
    non_empty_path(cmd->add_option("--vocab", opt->vocab_dir, "Take the tokenizer from this directory instead of HF_DIR"));
    cmd->callback([opt] { run(*opt); });
}

}  // namespace dendro::cli
