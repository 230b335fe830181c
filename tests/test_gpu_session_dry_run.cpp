// tools/gpu_session.sh --dry-run on a machine without a GPU: a fake nvidia-smi first on PATH and a fake
// cuBLAS through DENDRO_CUBLAS_LIBRARY. The script aborts at once without a GPU (exit 3) or cuBLAS (exit 4),
// runs every step in order with the flags the device call needs, cuts steps off when its budget is spent,
// and always leaves exactly its archive and table in $OUT (8 files at most come back from the device).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <string>
#include <vector>

#include "run_command.h"
#include "temp_dir.h"

namespace dendro::test {
namespace {

const std::string kScript = std::string(DENDRO_TEST_DATA) + "/../../tools/gpu_session.sh";

class GpuSessionDryRun : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(mkdir(dir.file("bin").c_str(), 0755), 0);
        ASSERT_EQ(mkdir(dir.file("out").c_str(), 0755), 0);
        write_text(dir.file("libcublas.so.13"), "not a library\n");
        fake_nvidia_smi("if [ \"$1\" = -L ]; then echo 'GPU 0: NVIDIA H200 (UUID: GPU-fake)'; "
                        "else echo 'FAKE NVIDIA-SMI H200'; fi");
    }

    static void write_text(const std::string& path, const std::string& text) {
        write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
    }

    void fake_nvidia_smi(const std::string& body) {
        const std::string path = dir.file("bin/nvidia-smi");
        write_text(path, "#!/bin/sh\n" + body + "\n");
        ASSERT_EQ(chmod(path.c_str(), 0755), 0);
    }

    CommandResult run(const std::string& args, const std::string& cublas = "") {
        const std::string library = cublas.empty() ? dir.file("libcublas.so.13") : cublas;
        return run_command("PATH=" + shell_quote(dir.file("bin")) + ":\"$PATH\" OUT=" + shell_quote(dir.file("out")) +
                           " DENDRO_CUBLAS_LIBRARY=" + shell_quote(library) + " bash " + shell_quote(kScript) +
                           " --dry-run " + args);
    }

    // A file of the archive, through tar.
    std::string archived(const std::string& name) {
        const CommandResult r =
            run_command("tar -xzf " + shell_quote(dir.file("out/gpu-session.tar.gz")) + " -O ./" + shell_quote(name));
        EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
        return r.out;
    }

    TempDir dir;
};

TEST_F(GpuSessionDryRun, RunsEveryStepAndLeavesOnlyTheArchiveAndTable) {
    const CommandResult r = run("");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("FAKE NVIDIA-SMI H200"), std::string::npos) << "nvidia-smi is printed first";
    EXPECT_LT(r.out.find("FAKE NVIDIA-SMI H200"), r.out.find("| step |"));
    for (const char* step : {"| gpu | ok", "| cublas | ok", "| deps | ok", "| configure | ok", "| build-dendro | ok",
                             "| build-tests | ok", "| test-gpu_test_cuda_backend | ok", "| test-gpu_test_sampling | ok",
                             "| memcheck-gpu_test_selective_scan | ok", "| racecheck-gpu_test_ssm_decode | ok",
                             "| model-2.8b | ok", "| smoke-cuda | ok", "| bench-130m | ok", "| bench-2.8b | ok",
                             "| bench-hf | ok"}) {
        EXPECT_NE(r.out.find(step), std::string::npos) << step << " missing from\n" << r.out;
    }
    // The table is the last thing printed.
    EXPECT_EQ(r.out.substr(r.out.rfind("gpu_session: exit")), "gpu_session: exit 0 (dry run); archive gpu-session.tar.gz\n");
    // out/ holds the archive and the table alone.
    const CommandResult ls = run_command("ls " + shell_quote(dir.file("out")));
    EXPECT_EQ(ls.out, "gpu-session.tar.gz\nsummary.md\n");

    EXPECT_NE(archived("steps.tsv").find("test-gpu_test_prefix_cache\tok"), std::string::npos);
    const std::string configure = archived("configure.log");
    EXPECT_NE(configure.find("-G Ninja"), std::string::npos) << configure;
    EXPECT_NE(configure.find("-DCMAKE_CUDA_ARCHITECTURES=90"), std::string::npos) << configure;
    const std::string build_tests = archived("build-tests.log");
    EXPECT_NE(build_tests.find("ninja -C"), std::string::npos) << build_tests;
    EXPECT_NE(build_tests.find("-j 16 gpu_test_"), std::string::npos) << build_tests;
    EXPECT_EQ(build_tests.find(" test_"), std::string::npos) << "only the gpu tests are built: " << build_tests;
    EXPECT_NE(archived("test-gpu_test_sampling.log").find("env DENDRO_REQUIRE_GPU=1"), std::string::npos);
    const std::string racecheck = archived("racecheck-gpu_test_norm_conv.log");
    EXPECT_NE(racecheck.find("--tool racecheck --error-exitcode 1"), std::string::npos) << racecheck;
    EXPECT_NE(archived("smoke-cuda.log").find("--device cuda"), std::string::npos);
}

TEST_F(GpuSessionDryRun, AbortsAtOnceWithoutAGpu) {
    fake_nvidia_smi("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver'; exit 9");
    const CommandResult r = run("");
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    EXPECT_NE(r.err.find("no GPU visible"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("| gpu | ABORT"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("| cublas"), std::string::npos) << "nothing runs after the abort: " << r.out;
    EXPECT_NE(archived("gpu.log").find("could not communicate"), std::string::npos);
}

TEST_F(GpuSessionDryRun, AbortsWhenTheNamedCublasIsMissing) {
    const CommandResult r = run("", dir.file("no-such/libcublas.so.13"));
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    EXPECT_NE(r.err.find("no libcublas.so."), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(dir.file("no-such/libcublas.so.13")), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("| configure"), std::string::npos) << r.out;
}

TEST_F(GpuSessionDryRun, SpentBudgetSkipsStepsButStillWritesTheTable) {
    const CommandResult r = run("--budget 12");
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("| configure | skipped | 0 | budget spent |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("gpu_session: exit 1 (dry run)"), std::string::npos) << r.out;
    EXPECT_EQ(run_command("ls " + shell_quote(dir.file("out"))).out, "gpu-session.tar.gz\nsummary.md\n");
}

TEST_F(GpuSessionDryRun, UnknownArgumentIsRefused) {
    const CommandResult r = run("--frobnicate");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("unknown argument '--frobnicate'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dendro::test
