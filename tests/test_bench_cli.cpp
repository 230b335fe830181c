// `dendro bench` on the CPU backend with a tiny random model: the llama-bench-style table and the JSON report
// carry one line per test with positive rates, and bad flags fail with one clear error line.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cpu/read_bandwidth.h"
#include "format/gguf.h"
#include "random_model_file.h"
#include "run_command.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace dendro {
namespace {

using test::run_command;
using test::shell_quote;

class BenchCli : public ::testing::Test {
protected:
    BenchCli() : model_(test::tiny_hparams_any_length(), GgmlType::F16) {}

    test::CommandResult bench(const std::string& args) {
        return run_command(std::string(DENDRO_EXE) + " bench -m " + shell_quote(model_.path()) + " " + args);
    }

    test::TempModelFile model_;
};

TEST_F(BenchCli, PrintsPromptAndGenerationRates) {
    const auto result = bench("-p 16 -n 4 -r 2 -b 3 --device cpu -t 1");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("| pp16 |"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("| tg4 b3 |"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("| cpu |"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("backend memory:"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("sampling on the host"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("machine read bandwidth: "), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("% of the machine's read bandwidth"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("GB/s with the states read and written: "), std::string::npos) << result.out;
}

TEST_F(BenchCli, JsonReportHasOneResultPerTest) {
    const auto result = bench("-p 8 -n 3 -r 3 --device cpu -t 1 --json");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto report = nlohmann::json::parse(result.out);
    EXPECT_EQ(report["backend"], "cpu");
    EXPECT_EQ(report["repetitions"], 3);
    EXPECT_GT(report["device_memory_bytes"].get<uint64_t>(), 0u);
    ASSERT_EQ(report["results"].size(), 2u);
    EXPECT_EQ(report["results"][0]["test"], "pp8");
    EXPECT_EQ(report["results"][1]["test"], "tg3");
    for (const auto& row : report["results"]) {
        EXPECT_GT(row["tokens_per_second"].get<double>(), 0.0) << row.dump();
        EXPECT_GE(row["tokens_per_second_sd"].get<double>(), 0.0) << row.dump();
    }
    const double weight_gbs = report["results"][1]["weight_bandwidth_gb_per_s"].get<double>();
    EXPECT_GT(weight_gbs, 0.0);
    // The machine's read bandwidth, measured with the backend's one thread, and decode's share of it.
    const auto& read = report["read_bandwidth"];
    EXPECT_GT(read["gb_per_s"].get<double>(), 0.0) << read.dump();
    EXPECT_EQ(read["threads"], 1) << read.dump();
    // As many bytes as a decode step reads (weights and the state), within the probe's bounds.
    const uint64_t step_bytes = report["weight_bytes_per_token"].get<uint64_t>() + report["state_bytes_per_sequence"].get<uint64_t>();
    const uint64_t buffer_bytes = std::clamp<uint64_t>(step_bytes, kReadBandwidthMinBufferBytes, kReadBandwidthMaxBufferBytes);
    EXPECT_EQ(read["buffer_bytes"].get<uint64_t>(), buffer_bytes / sizeof(float) * sizeof(float)) << read.dump();
    // One probe before each decode repetition, the median reported.
    std::vector<double> probes = read["per_repetition_gb_per_s"].get<std::vector<double>>();
    ASSERT_EQ(probes.size(), 3u) << read.dump();
    std::sort(probes.begin(), probes.end());
    EXPECT_DOUBLE_EQ(read["gb_per_s"].get<double>(), probes[1]) << read.dump();
    EXPECT_DOUBLE_EQ(report["results"][1]["weight_bandwidth_fraction"].get<double>(),
                     weight_gbs / read["gb_per_s"].get<double>());
    // With the state read and written once a step.
    const auto weight_bytes = report["weight_bytes_per_token"].get<double>();
    const auto state_bytes = report["state_bytes_per_sequence"].get<double>();
    EXPECT_GT(state_bytes, 0.0);
    EXPECT_DOUBLE_EQ(report["results"][1]["memory_bandwidth_gb_per_s"].get<double>(),
                     weight_gbs * (weight_bytes + 2 * state_bytes) / weight_bytes);
}

TEST_F(BenchCli, SkipsATestAskedForZeroTokens) {
    const auto result = bench("-p 0 -n 2 -r 1 --device cpu -t 1 --json");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto report = nlohmann::json::parse(result.out);
    ASSERT_EQ(report["results"].size(), 1u);
    EXPECT_EQ(report["results"][0]["test"], "tg2");
}

// Prefill alone never reads the weights once per token: no bandwidth is measured for it.
TEST_F(BenchCli, PrefillAloneMeasuresNoBandwidth) {
    const auto result = bench("-p 4 -n 0 -r 1 --device cpu -t 1 --json");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_FALSE(nlohmann::json::parse(result.out).contains("read_bandwidth")) << result.out;
}

TEST_F(BenchCli, RejectsBadArgumentsWithOneErrorLine) {
    for (const std::string& args : {"-r 0", "-b 0", "-p 0 -n 0", "-p -1", "--device tpu", "--random-shape 130m"}) {
        const auto result = bench(args + " --device cpu");
        EXPECT_NE(result.exit_code, 0) << args;
        EXPECT_NE(result.err.find("dendro: "), std::string::npos) << args << ": " << result.err;
        EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << args << ": " << result.err;
    }
    const auto missing = run_command(std::string(DENDRO_EXE) + " bench -m /nonexistent/model.gguf --device cpu");
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("/nonexistent/model.gguf"), std::string::npos) << missing.err;
    const auto shape = run_command(std::string(DENDRO_EXE) + " bench --random-shape 7b --device cpu");
    EXPECT_NE(shape.exit_code, 0);
    EXPECT_NE(shape.err.find("unknown --random-shape '7b'"), std::string::npos) << shape.err;
}

// A bad --type or --random-out is reported before anything is written (no "writing a random model" line).
TEST_F(BenchCli, RandomModelFlagsAreCheckedBeforeWriting) {
    const test::TempDir dir;
    for (const std::string& args : {std::string("--type q4"), "--random-out " + dir.path(),
                                    "--random-out " + dir.file("missing/model.gguf"), std::string("--random-shape 7b")}) {
        const auto result = run_command(std::string(DENDRO_EXE) + " bench --random-shape 130m --device cpu " + args);
        EXPECT_NE(result.exit_code, 0) << args;
        EXPECT_EQ(result.err.find("writing"), std::string::npos) << args << ": " << result.err;
        EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << args << ": " << result.err;
    }
    EXPECT_TRUE(dir.entries().empty());
}

TEST_F(BenchCli, CudaRequestWithoutCudaIsAClearError) {
    if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
    const auto result = bench("-p 4 -n 0 -r 1 --device cuda");
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.err.find("CUDA"), std::string::npos) << result.err;
}

// The random model kept by --random-out is complete: a vocabulary of the model's size that loads as a
// tokenizer, so the same file serves llama.cpp's bench too.
TEST(BenchCliRandomModel, KeptFileHasAVocabularyOfTheModelsSize) {
    test::TempDir dir;
    const std::string path = dir.file("random-130m.gguf");
    const auto result = run_command(std::string(DENDRO_EXE) + " bench --random-shape 130m --type q8_0 --random-out " +
                                    shell_quote(path) + " -p 1 -n 1 -r 1 --device cpu");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto file = GgufFile::open(path);
    const auto tokenizer = Tokenizer::from_gguf(*file);
    EXPECT_EQ(tokenizer->n_vocab(), 50280);
    const std::string text = "To be, or not to be: that is the question.";
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false)), text);
}

}  // namespace
}  // namespace dendro
