// The prompt cache through the CLI: `dendro run --prompt-cache / --cache-dir` gives the uncached output
// while restoring what it can, warns (and computes) for foreign, corrupt or truncated files, several runs can
// share a cache directory, `dendro cache ls|info|rm|clear` inspect and prune it, and `dendro cache bench` runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>

#include "random_model_file.h"
#include "run_command.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::CommandResult;
using test::run_command;
using test::shell_quote;

const std::string kPrompt = "The quick brown fox jumps over the lazy dog, twice over.";  // 56 bytes
const std::string kLongerPrompt = kPrompt + " Then it sleeps.";

class CacheCliTest : public ::testing::Test {
protected:
    test::TempModelFile model{test::tiny_hparams_byte_vocab(), GgmlType::F32, /*seed=*/3, /*tied=*/true,
                              test::byte_tokenizer_options()};
    test::TempModelFile other_model{test::tiny_hparams_byte_vocab(), GgmlType::F32, /*seed=*/4, /*tied=*/true,
                                    test::byte_tokenizer_options()};
    test::TempDir dir;
    std::string cache_dir = dir.file("cache");

    static CommandResult dendro(const std::string& args) { return run_command(shell_quote(DENDRO_EXE) + " " + args); }

    // Greedy generation, so the text depends only on the logits.
    CommandResult run(const std::string& prompt, const std::string& cache_flags, const std::string& model_path = "") {
        return dendro("run -m " + shell_quote(model_path.empty() ? model.path() : model_path) + " -p " +
                      shell_quote(prompt) + " -n 16 --temp 0 -s 1 -t 1 " + cache_flags);
    }
    // From run's closing line "prompt cache: R of N prompt tokens restored, ...": R, and N.
    static std::string restored(const CommandResult& r) { return cache_line_field(r, 0); }
    static std::string prompt_tokens(const CommandResult& r) { return cache_line_field(r, 2); }
    static std::string cache_line_field(const CommandResult& r, int index) {
        const size_t at = r.err.find("prompt cache: ");
        if (at == std::string::npos) return "";
        std::istringstream words(r.err.substr(at + std::string("prompt cache: ").size()));
        std::string word;
        for (int i = 0; i <= index; ++i) words >> word;
        return word;
    }
    static size_t count(const std::string& text, const std::string& what) {
        size_t n = 0;
        for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
        return n;
    }
};

TEST_F(CacheCliTest, PromptCacheFileRestoresAndKeepsTheOutput) {
    const CommandResult plain = run(kPrompt, "");
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    const std::string file = dir.file("prompt.dstate");

    const CommandResult first = run(kPrompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_EQ(restored(first), "0") << first.err;
    EXPECT_TRUE(std::filesystem::exists(file));
    EXPECT_EQ(first.out, plain.out);

    const CommandResult second = run(kPrompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_EQ(restored(second), prompt_tokens(second)) << second.err;
    EXPECT_EQ(second.out, plain.out);

    const CommandResult longer = run(kLongerPrompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(longer.exit_code, 0) << longer.err;
    EXPECT_EQ(restored(longer), prompt_tokens(second)) << longer.err;
    EXPECT_EQ(longer.out, run(kLongerPrompt, "").out);
    EXPECT_EQ(count(first.err + second.err + longer.err, "warning"), 0u);
}

TEST_F(CacheCliTest, ForeignCorruptOrTruncatedPromptCacheWarnsAndComputes) {
    const std::string file = dir.file("prompt.dstate");
    ASSERT_EQ(run(kPrompt, "--prompt-cache " + shell_quote(file), other_model.path()).exit_code, 0);
    const CommandResult plain = run(kPrompt, "");

    const CommandResult foreign = run(kPrompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(foreign.exit_code, 0) << foreign.err;
    EXPECT_EQ(count(foreign.err, "dendro: warning: "), 1u) << foreign.err;
    EXPECT_NE(foreign.err.find("another model"), std::string::npos) << foreign.err;
    EXPECT_EQ(restored(foreign), "0");
    EXPECT_EQ(foreign.out, plain.out);

    std::vector<uint8_t> bytes = test::read_file(file);  // now saved for this model
    bytes[bytes.size() / 2] ^= 0x55;
    test::write_file(file, bytes);
    const CommandResult corrupt = run(kPrompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(corrupt.exit_code, 0) << corrupt.err;
    EXPECT_NE(corrupt.err.find("corrupt"), std::string::npos) << corrupt.err;
    EXPECT_EQ(corrupt.out, plain.out);

    bytes = test::read_file(file);
    bytes.resize(bytes.size() - 3);
    test::write_file(file, bytes);
    const CommandResult truncated = run(kPrompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(truncated.exit_code, 0) << truncated.err;
    EXPECT_NE(truncated.err.find("truncated"), std::string::npos) << truncated.err;
    EXPECT_EQ(truncated.out, plain.out);
}

TEST_F(CacheCliTest, CacheDirResumesFromACheckpoint) {
    const std::string flags = "--cache-dir " + shell_quote(cache_dir) + " --cache-every 16";
    const CommandResult first = run(kPrompt, flags);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_EQ(restored(first), "0");
    EXPECT_NE(first.err.find("4 states saved"), std::string::npos) << first.err;  // 16, 32, 48 and the end

    // Shares the first 20 bytes (and a BOS token, if the vocabulary adds one): resumes from the checkpoint at 16.
    const std::string branch = kPrompt.substr(0, 20) + "cat naps in the sun.";
    const CommandResult resumed = run(branch, flags);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_EQ(restored(resumed), "16") << resumed.err;
    EXPECT_EQ(resumed.out, run(branch, "").out);

    const CommandResult again = run(kPrompt, flags);
    EXPECT_EQ(restored(again), prompt_tokens(again)) << again.err;
    EXPECT_EQ(again.out, first.out);
}

TEST_F(CacheCliTest, ConcurrentRunsShareACacheDir) {
    const std::string flags = "--cache-dir " + shell_quote(cache_dir) + " --cache-every 8 --cache-size 40K";
    const std::string one = dir.file("one.txt"), two = dir.file("two.txt");
    const std::string line = shell_quote(DENDRO_EXE) + " run -m " + shell_quote(model.path()) + " -p " +
                             shell_quote(kPrompt) + " -n 16 --temp 0 -s 1 -t 1 " + flags;
    const CommandResult both = run_command(line + " >" + shell_quote(one) + " & first=$!; " + line + " >" +
                                           shell_quote(two) + " & second=$!; wait $first && wait $second");
    ASSERT_EQ(both.exit_code, 0) << both.err;
    EXPECT_EQ(count(both.err, "warning"), 0u) << both.err;
    const std::vector<uint8_t> a = test::read_file(one), b = test::read_file(two);
    EXPECT_EQ(a, b);
    EXPECT_EQ(std::string(a.begin(), a.end()), run(kPrompt, "").out);

    const CommandResult ls = dendro("cache ls " + shell_quote(cache_dir));
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    EXPECT_EQ(ls.err, "");
    // --cache-size 40K held: the prompt's 7 states (every 8 of 56 tokens) of ~7 KiB do not all fit, so least
    // recently used ones were evicted.
    constexpr uintmax_t kCacheSizeFlag = 40 * 1024;
    uintmax_t total = 0;
    size_t n_entries = 0;
    for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(cache_dir) / "entries")) {
        total += entry.file_size();
        ++n_entries;
    }
    EXPECT_LE(total, kCacheSizeFlag);
    EXPECT_GT(n_entries, 0u);
    EXPECT_LT(n_entries, 7u);
}

TEST_F(CacheCliTest, CacheSizeIsEnforcedAndValidated) {
    const CommandResult tiny = run(kPrompt, "--cache-dir " + shell_quote(cache_dir) + " --cache-size 1K");
    ASSERT_EQ(tiny.exit_code, 0) << tiny.err;
    EXPECT_EQ(count(tiny.err, "dendro: warning: "), 1u) << tiny.err;
    EXPECT_NE(tiny.err.find("does not fit"), std::string::npos) << tiny.err;

    const CommandResult bad = run(kPrompt, "--cache-dir " + shell_quote(cache_dir) + " --cache-size 2X");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("invalid size '2X'"), std::string::npos) << bad.err;
    EXPECT_NE(run(kPrompt, "--cache-every 8").exit_code, 0);  // only with --cache-dir
    EXPECT_NE(run(kPrompt, "--cache-dir a --prompt-cache b").exit_code, 0);
}

TEST_F(CacheCliTest, CacheCommandsListDescribeRemoveAndClear) {
    ASSERT_EQ(run(kPrompt, "--cache-dir " + shell_quote(cache_dir) + " --cache-every 16").exit_code, 0);
    const std::string d = shell_quote(cache_dir);

    const CommandResult ls = dendro("cache ls " + d);
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    EXPECT_NE(ls.out.find("4 entries"), std::string::npos) << ls.out;
    // The first column of the line after the header is the most recently used entry's id.
    const size_t line2 = ls.out.find('\n') + 1;
    const std::string id = ls.out.substr(line2, ls.out.find(' ', line2) - line2);

    const CommandResult summary = dendro("cache info " + d);
    ASSERT_EQ(summary.exit_code, 0) << summary.err;
    EXPECT_NE(summary.out.find("entries:   4"), std::string::npos) << summary.out;

    const CommandResult info = dendro("cache info " + d + " " + shell_quote(id));
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_NE(info.out.find("checksum:  ok"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("n_layer 2, d_conv 4, d_inner 64, d_state 8, n_vocab 260"), std::string::npos);

    const CommandResult ambiguous = dendro("cache rm " + d + " " + shell_quote(id.substr(0, 8)));
    EXPECT_EQ(ambiguous.exit_code, 1);
    EXPECT_NE(ambiguous.err.find("names 4 entries"), std::string::npos) << ambiguous.err;

    const CommandResult rm = dendro("cache rm " + d + " " + shell_quote(id));
    ASSERT_EQ(rm.exit_code, 0) << rm.err;
    EXPECT_NE(dendro("cache ls " + d).out.find("3 entries"), std::string::npos);
    EXPECT_EQ(dendro("cache rm " + d + " " + shell_quote(id)).exit_code, 1);  // gone

    const CommandResult clear = dendro("cache clear " + d);
    ASSERT_EQ(clear.exit_code, 0) << clear.err;
    EXPECT_NE(clear.out.find("removed 3 entries"), std::string::npos) << clear.out;
    EXPECT_NE(dendro("cache ls " + d).out.find("0 entries"), std::string::npos);
}

TEST_F(CacheCliTest, CacheCommandsRefuseADirectoryThatIsNotACache) {
    const std::string foreign = dir.file("foreign");
    std::filesystem::create_directories(foreign);
    test::write_file(foreign + "/keep.txt", std::vector<uint8_t>{'k'});
    for (const char* sub : {"ls", "info", "clear"}) {
        const CommandResult r = dendro(std::string("cache ") + sub + " " + shell_quote(foreign));
        EXPECT_EQ(r.exit_code, 1) << sub;
        EXPECT_NE(r.err.find("not a Dendro cache directory"), std::string::npos) << r.err;
    }
    EXPECT_TRUE(std::filesystem::exists(foreign + "/keep.txt"));
    const CommandResult run_there = run(kPrompt, "--cache-dir " + shell_quote(foreign));
    EXPECT_EQ(run_there.exit_code, 1);
    EXPECT_NE(run_there.err.find("not a Dendro cache directory"), std::string::npos) << run_there.err;
    EXPECT_EQ(dendro("cache ls " + shell_quote(dir.file("missing"))).exit_code, 1);
}

TEST_F(CacheCliTest, CacheBenchReportsIdenticalLogitsAndCleansUp) {
    const std::string scratch = dir.file("bench");
    const CommandResult bench = dendro("cache bench " + shell_quote(scratch) + " -m " + shell_quote(model.path()) +
                                       " --prefix 40 --new 8 --cache-every 16 -r 1 -t 1");
    ASSERT_EQ(bench.exit_code, 0) << bench.err;
    EXPECT_NE(bench.out.find("logits identical to the cold prefill's"), std::string::npos) << bench.out;
    EXPECT_NE(bench.out.find("save one state"), std::string::npos) << bench.out;
    EXPECT_FALSE(std::filesystem::exists(scratch));

    std::filesystem::create_directories(scratch);  // never a directory that already exists
    EXPECT_EQ(dendro("cache bench " + shell_quote(scratch) + " -m " + shell_quote(model.path())).exit_code, 1);
    EXPECT_TRUE(std::filesystem::exists(scratch));
}

TEST_F(CacheCliTest, CacheBenchRejectsBadFlagsWithOneErrorLineAndNoScratchDirectory) {
    const std::string scratch = dir.file("bench");
    for (const std::string& flags : {"--prefix 0", "--new 0", "-r 0", "--cache-every -1", "--device tpu"}) {
        const CommandResult bench =
            dendro("cache bench " + shell_quote(scratch) + " -m " + shell_quote(model.path()) + " " + flags);
        EXPECT_EQ(bench.exit_code, 1) << flags;
        EXPECT_NE(bench.err.find("dendro: "), std::string::npos) << flags << ": " << bench.err;
        EXPECT_EQ(std::count(bench.err.begin(), bench.err.end(), '\n'), 1) << flags << ": " << bench.err;
        EXPECT_FALSE(std::filesystem::exists(scratch)) << flags;
    }
}

}  // namespace
}  // namespace dendro
