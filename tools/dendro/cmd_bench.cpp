// dendro bench: llama-bench-style throughput of a model on a backend. Prompt processing (pp): one prefill of
// -p tokens into an empty state; text generation (tg): -n decode steps of -b sequences from empty states,
// each step feeding back its greedy tokens (sampled on the device when the backend can). Each test runs once
// to warm up (CUDA graphs are captured then), then -r times; states are reset before each repetition. Reports
// mean ± sample standard deviation of tokens per second, the backend's memory and, for tg, the weight
// bandwidth achieved (on the CPU also as a share of the machine's read bandwidth, measured first). --random-shape benchmarks a random model of a published Mamba shape instead of -m.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "backend/backend.h"
#include "cache/sequence_state.h"
#include "common/byte_size.h"
#include "commands.h"
#include "flag_checks.h"
#include "measure.h"
#include "common/error.h"
#include "cpu/read_bandwidth.h"
#include "cpu/topology.h"
#include "model/model.h"
#include "random_model.h"

namespace dendro::cli {
namespace {

struct BenchOptions {
    std::string model_path;
    int n_prompt = 512;
    int n_gen = 128;
    int repetitions = 5;
    int batch = 1;
    int n_threads = 0;
    std::string device = "auto";
    std::string random_shape;
    std::string random_type = "f16";
    std::string random_out;
    bool json = false;
};

constexpr const char* kRandomShapes = "130m, 2.8b, mamba2-130m, mamba2-2.7b or codestral-7b";

// Published shapes: state-spaces/mamba-130m-hf and mamba-2.8b-hf (Mamba-1), state-spaces/mamba2-130m and
// mamba2-2.7b (tied, vocabulary padded to 50,288), mistralai/Mamba-Codestral-7B-v0.1 (8 groups, untied).
struct RandomShape {
    ModelHparams hp;
    bool tied = true;
};

RandomShape shape_hparams(const std::string& shape) {
    RandomShape r;
    ModelHparams& hp = r.hp;
    hp.d_conv = 4;
    hp.norm_eps = 1e-5f;
    if (shape == "130m" || shape == "2.8b") {
        hp.n_vocab = 50280;
        hp.d_state = 16;
        hp.d_model = shape == "130m" ? 768 : 2560;
        hp.n_layer = shape == "130m" ? 24 : 64;
        hp.d_inner = 2 * hp.d_model;
        hp.dt_rank = (hp.d_model + 15) / 16;
        return r;
    }
    hp.arch = Architecture::Mamba2;
    hp.d_state = 128;
    hp.head_dim = 64;
    if (shape == "mamba2-130m" || shape == "mamba2-2.7b") {
        hp.n_vocab = 50288;
        hp.d_model = shape == "mamba2-130m" ? 768 : 2560;
        hp.n_layer = shape == "mamba2-130m" ? 24 : 64;
        hp.n_group = 1;
    } else if (shape == "codestral-7b") {
        hp.n_vocab = 32768;
        hp.d_model = 4096;
        hp.n_layer = 64;
        hp.n_group = 8;
        r.tied = false;
    } else {
        fail("unknown --random-shape '", shape, "': expected ", kRandomShapes);
    }
    hp.d_inner = 2 * hp.d_model;
    hp.n_head = hp.d_inner / hp.head_dim;
    return r;
}

// --random-out names a file to create or replace: its directory must exist and it must not be a directory.
void check_random_out(const std::string& path) {
    if (path.empty()) return;  // a temporary file
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail("--random-out ", path, ": is a directory");
    const std::filesystem::path directory = std::filesystem::path(path).parent_path();
    if (!directory.empty() && !std::filesystem::is_directory(directory, ec)) {
        fail("--random-out ", path, ": the directory ", directory.string(), " does not exist");
    }
}

// A random model file that is removed when the benchmark ends, unless the user asked to keep it.
class RandomModelFile {
public:
    // `hp` and `type` are the checked --random-shape and --type.
    RandomModelFile(const BenchOptions& opt, const RandomShape& shape, OutType type) {
        keep_ = !opt.random_out.empty();
        path_ = keep_ ? opt.random_out
                      : (std::filesystem::temp_directory_path() /
                         concat("dendro-bench-", opt.random_shape, "-", ::getpid(), ".gguf"))
                            .string();
        std::fprintf(stderr, "bench: writing a random %s model (%s) to %s\n", opt.random_shape.c_str(),
                     opt.random_type.c_str(), path_.c_str());
        RandomModelOptions options;
        options.bpe_vocabulary = true;  // a complete file: llama.cpp can benchmark the same one
        write_random_mamba_gguf(path_, shape.hp, type, 1, shape.tied, options);
    }
    ~RandomModelFile() {
        if (!keep_) {
            std::error_code ignored;
            std::filesystem::remove(path_, ignored);
        }
    }
    RandomModelFile(const RandomModelFile&) = delete;
    RandomModelFile& operator=(const RandomModelFile&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
    bool keep_ = false;
};

std::vector<int32_t> random_tokens(size_t n, int64_t n_vocab) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = dist(rng);
    return tokens;
}

// Seconds for one prefill of `tokens` into a fresh state.
double time_prefill(Backend& backend, const std::vector<int32_t>& tokens, std::vector<float>& logits) {
    backend.reset(0);
    const auto start = std::chrono::steady_clock::now();
    backend.prefill(0, tokens, logits, false);
    return seconds_since(start);
}

// Seconds for n_steps greedy decode steps of every slot in `seqs` from fresh states; sets on_device to whether
// the backend sampled on its device.
double time_generation(Backend& backend, const std::vector<int>& seqs, int n_steps, bool& on_device) {
    const int64_t n_vocab = backend.hparams().n_vocab;
    for (int seq : seqs) backend.reset(seq);
    std::vector<int32_t> tokens = random_tokens(seqs.size(), n_vocab), next(seqs.size());
    std::vector<float> logits(seqs.size() * n_vocab);
    const DeviceSampling greedy{};
    const auto start = std::chrono::steady_clock::now();
    for (int step = 0; step < n_steps; ++step) {
        on_device = backend.decode_sample(seqs, tokens, greedy, next);
        if (!on_device) {
            backend.decode(seqs, tokens, logits);
            for (size_t i = 0; i < seqs.size(); ++i) {
                const auto row = logits.begin() + static_cast<std::ptrdiff_t>(i * n_vocab);
                next[i] = static_cast<int32_t>(std::max_element(row, row + n_vocab) - row);
            }
        }
        tokens.swap(next);
    }
    return seconds_since(start);
}

void bench(const BenchOptions& opt) {
    if (opt.model_path.empty() == opt.random_shape.empty()) fail("give exactly one of -m FILE and --random-shape");
    if (opt.n_prompt < 0 || opt.n_gen < 0) fail("-p and -n must be >= 0");
    if (opt.n_prompt == 0 && opt.n_gen == 0) fail("nothing to measure: -p and -n are both 0");
    if (opt.repetitions < 1) fail("-r must be >= 1, got ", opt.repetitions);
    if (opt.batch < 1) fail("-b must be >= 1, got ", opt.batch);
    const DeviceKind device = parse_device(opt.device);
    // Before writing a random model of gigabytes for nothing.
    if (device == DeviceKind::Cuda && !cuda_available()) {
        fail("--device cuda: no usable CUDA device in this build or on this machine");
    }

    std::unique_ptr<RandomModelFile> random_file;
    if (!opt.random_shape.empty()) {
        // Every random-model flag is checked before the "writing" line and the write.
        const RandomShape shape = shape_hparams(opt.random_shape);
        const OutType type = parse_out_type(opt.random_type, "--type");
        check_random_out(opt.random_out);
        random_file = std::make_unique<RandomModelFile>(opt, shape, type);
    }
    const std::string path = random_file ? random_file->path() : opt.model_path;
    const auto model = Model::load(path);
    BackendOptions backend_options;
    backend_options.n_threads = opt.n_threads;
    backend_options.n_seq_max = opt.batch;
    const auto backend = make_backend(device, *model, backend_options);
    const int64_t n_vocab = model->hparams().n_vocab;

    struct Result {
        std::string test;
        MeanSd tokens_per_second;
        double bandwidth_gbs = 0.0;         // tg only: weights
        double memory_bandwidth_gbs = 0.0;  // tg only: weights, and the states read and written
        std::string sampling;               // tg only
    };
    std::vector<Result> results;
    const uint64_t state_bytes_per_sequence = StateShape::of(model->hparams()).bytes();
    // What decode can at best reach on the CPU, with the backend's threads, reading as many bytes as a step
    // does: measured before each decode repetition, so that the probes span the same minutes as the decode
    // (this VM's bandwidth moved by 2x between files of one run when it was measured once per file), and
    // taken as their median.
    std::unique_ptr<ReadBandwidthProbe> probe;
    if (opt.n_gen > 0 && backend->name() == "cpu") {
        const uint64_t step_bytes = backend->weight_bytes_per_token() + state_bytes_per_sequence * static_cast<uint64_t>(opt.batch);
        probe = std::make_unique<ReadBandwidthProbe>(opt.n_threads > 0 ? opt.n_threads : default_thread_count(),
                                                     static_cast<size_t>(step_bytes));
    }
    std::vector<double> probe_gb_per_s;
    std::optional<ReadBandwidth> read_bandwidth;

    if (opt.n_prompt > 0) {
        const std::vector<int32_t> tokens = random_tokens(static_cast<size_t>(opt.n_prompt), n_vocab);
        std::vector<float> logits(static_cast<size_t>(n_vocab));
        time_prefill(*backend, tokens, logits);  // warm-up
        std::vector<double> rates;
        for (int r = 0; r < opt.repetitions; ++r) {
            rates.push_back(opt.n_prompt / time_prefill(*backend, tokens, logits));
        }
        results.push_back({concat("pp", opt.n_prompt), mean_and_sd(rates), 0.0, 0.0, ""});
    }
    if (opt.n_gen > 0) {
        std::vector<int> seqs(static_cast<size_t>(opt.batch));
        for (int i = 0; i < opt.batch; ++i) seqs[i] = i;
        bool on_device = false;
        time_generation(*backend, seqs, std::min(opt.n_gen, 2), on_device);  // warm-up (captures graphs)
        std::vector<double> rates, steps_per_second;
        for (int r = 0; r < opt.repetitions; ++r) {
            if (probe) {
                read_bandwidth = probe->measure();
                probe_gb_per_s.push_back(read_bandwidth->gb_per_s);
            }
            const double seconds = time_generation(*backend, seqs, opt.n_gen, on_device);
            rates.push_back(static_cast<double>(opt.n_gen) * opt.batch / seconds);
            steps_per_second.push_back(opt.n_gen / seconds);
        }
        if (read_bandwidth) read_bandwidth->gb_per_s = median(probe_gb_per_s);
        // A step reads the weights once and reads and writes each sequence's state (for Mamba-2 a sizeable
        // part: 19 MB against 138 MB of q8_0 weights at the 130m shape).
        const double steps = mean_and_sd(steps_per_second).mean;
        const double weight_bytes = static_cast<double>(backend->weight_bytes_per_token());
        const double state_bytes = 2.0 * static_cast<double>(state_bytes_per_sequence) * opt.batch;
        results.push_back({concat("tg", opt.n_gen, opt.batch > 1 ? concat(" b", opt.batch) : std::string()),
                           mean_and_sd(rates), steps * weight_bytes / 1e9, steps * (weight_bytes + state_bytes) / 1e9,
                           on_device ? "device" : "host"});
    }

    const std::string model_name =
        random_file ? concat("random-", opt.random_shape, "-", opt.random_type) : model->name();
    if (opt.json) {
        nlohmann::json out;
        out["model"] = model_name;
        out["model_bytes"] = model->weight_bytes();
        out["backend"] = backend->name();
        out["device_memory_bytes"] = backend->device_memory_bytes();
        out["weight_bytes_per_token"] = backend->weight_bytes_per_token();
        out["state_bytes_per_sequence"] = state_bytes_per_sequence;
        out["repetitions"] = opt.repetitions;
        out["batch"] = opt.batch;
        if (read_bandwidth) {
            out["read_bandwidth"] = {{"gb_per_s", read_bandwidth->gb_per_s},
                                     {"per_repetition_gb_per_s", probe_gb_per_s},
                                     {"buffer_bytes", read_bandwidth->buffer_bytes},
                                     {"threads", read_bandwidth->threads}};
        }
        for (const Result& r : results) {
            nlohmann::json row{{"test", r.test}, {"tokens_per_second", r.tokens_per_second.mean},
                               {"tokens_per_second_sd", r.tokens_per_second.sd}};
            if (!r.sampling.empty()) {
                row["weight_bandwidth_gb_per_s"] = r.bandwidth_gbs;
                row["memory_bandwidth_gb_per_s"] = r.memory_bandwidth_gbs;
                if (read_bandwidth) {
                    row["weight_bandwidth_fraction"] = r.bandwidth_gbs / read_bandwidth->gb_per_s;
                    row["memory_bandwidth_fraction"] = r.memory_bandwidth_gbs / read_bandwidth->gb_per_s;
                }
                row["sampling"] = r.sampling;
            }
            out["results"].push_back(row);
        }
        std::printf("%s\n", out.dump(2).c_str());
        return;
    }
    std::printf("| model | size | backend | test | t/s |\n| --- | ---: | --- | --- | ---: |\n");
    for (const Result& r : results) {
        std::printf("| %s | %s | %s | %s | %.2f ± %.2f |\n", model_name.c_str(),
                    format_byte_size(model->weight_bytes()).c_str(), backend->name().c_str(), r.test.c_str(),
                    r.tokens_per_second.mean, r.tokens_per_second.sd);
    }
    std::printf("\nbackend memory: %s; weights read per decode step: %s; state read and written per sequence: %s\n",
                format_byte_size(backend->device_memory_bytes()).c_str(),
                format_byte_size(backend->weight_bytes_per_token()).c_str(),
                format_byte_size(state_bytes_per_sequence).c_str());
    if (read_bandwidth) {
        std::printf("machine read bandwidth: %.1f GB/s (median of %zu probes, one before each decode repetition: %d thread%s, "
                    "%s buffer: a decode step's reads, best of %d passes)\n",
                    read_bandwidth->gb_per_s, probe_gb_per_s.size(), read_bandwidth->threads,
                    read_bandwidth->threads == 1 ? "" : "s", format_byte_size(read_bandwidth->buffer_bytes).c_str(),
                    kReadBandwidthPasses);
    }
    for (const Result& r : results) {
        if (r.sampling.empty()) continue;
        const std::string shares =
            read_bandwidth ? concat(": ", std::lround(100.0 * r.bandwidth_gbs / read_bandwidth->gb_per_s), " % and ",
                                    std::lround(100.0 * r.memory_bandwidth_gbs / read_bandwidth->gb_per_s),
                                    " % of the machine's read bandwidth")
                           : std::string();
        std::printf("%s: %.1f GB/s of weights, %.1f GB/s with the states read and written%s; sampling on the %s\n",
                    r.test.c_str(), r.bandwidth_gbs, r.memory_bandwidth_gbs, shares.c_str(), r.sampling.c_str());
    }
}

}  // namespace

void add_bench_command(CLI::App& app) {
    auto opt = std::make_shared<BenchOptions>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prompt-processing and generation speed (tokens/s)");
    non_empty_path(cmd->add_option("-m,--model", opt->model_path, "GGUF model file"));
    cmd->add_option("-p,--n-prompt", opt->n_prompt, "prompt tokens per prefill test (0 = skip)")->capture_default_str();
    cmd->add_option("-n,--n-gen", opt->n_gen, "decode steps per generation test (0 = skip)")->capture_default_str();
    cmd->add_option("-r,--repetitions", opt->repetitions, "timed repetitions of each test")->capture_default_str();
    cmd->add_option("-b,--batch", opt->batch, "sequences decoded together in the generation test")
        ->capture_default_str();
    cmd->add_option("--device", opt->device, "auto, cpu or cuda")->capture_default_str();
    add_thread_count_option(cmd, opt->n_threads);
    cmd->add_option("--random-shape", opt->random_shape, concat("benchmark a random model of this shape: ", kRandomShapes));
    cmd->add_option("--type", opt->random_type,
                    "weight types of the random model, as dendro convert --outtype: " + out_type_names())
        ->capture_default_str();
    non_empty_path(cmd->add_option("--random-out", opt->random_out,
                                   "keep the random model in this file (default: a temporary file)"));
    cmd->add_flag("--json", opt->json, "print the results as JSON");
    cmd->callback([opt] { bench(*opt); });
}

}  // namespace dendro::cli
