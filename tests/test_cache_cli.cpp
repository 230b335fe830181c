// The prompt cache through the CLI: `dendro run --prompt-cache / --cache-dir` gives the uncached output
// while restoring what it can, warns (and computes) for foreign, corrupt or truncated files, never writes over
// a path that is not a Dendro state file nor blocks on a FIFO, several runs can share a cache directory,
// `dendro cache ls|info|rm|clear` inspect and prune it (sparing live writers' files), and `dendro cache bench` runs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include "exited_process.h"
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

    // Bounded, so that a run that blocks (on a FIFO, say) fails the test instead of hanging the suite.
    static CommandResult dendro(const std::string& args) {
        return run_command("timeout " + std::to_string(kTimeoutSeconds) + " " + shell_quote(DENDRO_EXE) + " " + args);
    }
    static constexpr int kTimeoutSeconds = 30;
    static constexpr int kTimedOut = 124;  // timeout(1)'s exit status

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

// A --prompt-cache path that exists and is not a Dendro state file belongs to the user: one warning saying
// it is left alone, the prompt computed, nothing written there (nor beside it).
class PromptCacheOnAForeignPathTest : public CacheCliTest {
protected:
    std::string plain_out = run(kPrompt, "").out;

    void expect_left_alone(const CommandResult& r, const std::string& path) {
        EXPECT_NE(r.exit_code, kTimedOut) << "blocked on " << path;
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, plain_out);
        EXPECT_EQ(count(r.err, "dendro: warning: "), 1u) << r.err;
        EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("will not be overwritten"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("0 states saved"), std::string::npos) << r.err;
        for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
            EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << "left behind: " << entry.path();
        }
    }
};

TEST_F(PromptCacheOnAForeignPathTest, ThePromptFileItself) {
    const std::string prompt_file = dir.file("prompt.txt");
    test::write_file(prompt_file, std::vector<uint8_t>(kPrompt.begin(), kPrompt.end()));
    const CommandResult r = dendro("run -m " + shell_quote(model.path()) + " -f " + shell_quote(prompt_file) +
                                   " -n 16 --temp 0 -s 1 -t 1 --prompt-cache " + shell_quote(prompt_file));
    expect_left_alone(r, prompt_file);
    EXPECT_EQ(test::read_file(prompt_file), std::vector<uint8_t>(kPrompt.begin(), kPrompt.end()));
}

TEST_F(PromptCacheOnAForeignPathTest, TheModelFile) {
    const std::vector<uint8_t> before = test::read_file(other_model.path());
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(other_model.path())), other_model.path());
    EXPECT_EQ(test::read_file(other_model.path()), before);
}

TEST_F(PromptCacheOnAForeignPathTest, AnEmptyFileADirectoryAndSymlinks) {
    const std::string empty = dir.file("empty");
    test::write_file(empty, {});
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(empty)), empty);
    EXPECT_TRUE(test::read_file(empty).empty());

    const std::string directory = dir.file("a-directory");
    std::filesystem::create_directories(directory);
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(directory)), directory);
    EXPECT_TRUE(std::filesystem::is_directory(directory));

    const std::string text = dir.file("notes.txt"), link = dir.file("link-to-notes");
    test::write_file(text, std::vector<uint8_t>{'n'});
    std::filesystem::create_symlink(text, link);
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(link)), link);
    EXPECT_TRUE(std::filesystem::is_symlink(link));
    EXPECT_EQ(test::read_file(text), std::vector<uint8_t>{'n'});

    const std::string dangling = dir.file("dangling");
    std::filesystem::create_symlink(dir.file("nowhere"), dangling);
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(dangling)), dangling);
    EXPECT_TRUE(std::filesystem::is_symlink(dangling));
    EXPECT_FALSE(std::filesystem::exists(dir.file("nowhere")));
}

TEST_F(PromptCacheOnAForeignPathTest, AFifoNeitherBlocksNorIsReplaced) {
    const std::string fifo = dir.file("fifo");
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(fifo)), fifo);
    EXPECT_TRUE(std::filesystem::is_fifo(fifo));
}

// A node of /dev/null's device (rather than /dev/null itself, which a regression would destroy for the whole
// machine). Making one needs root.
TEST_F(PromptCacheOnAForeignPathTest, ADeviceIsNotReplaced) {
    const std::string device = dir.file("null");
    constexpr unsigned kMemMajor = 1, kNullMinor = 3;  // Linux's /dev/null
    if (::mknod(device.c_str(), S_IFCHR | 0666, makedev(kMemMajor, kNullMinor)) != 0) {
        GTEST_SKIP() << "cannot make a device node (needs root)";
    }
    expect_left_alone(run(kPrompt, "--prompt-cache " + shell_quote(device)), device);
    EXPECT_TRUE(std::filesystem::is_character_file(device));
}

// A symlink to a state file: the file it names is updated and the link kept.
TEST_F(CacheCliTest, PromptCacheThroughASymlinkUpdatesTheFileItNames) {
    const std::string file = dir.file("prompt.dstate"), link = dir.file("link.dstate");
    ASSERT_EQ(run(kPrompt, "--prompt-cache " + shell_quote(file)).exit_code, 0);
    std::filesystem::create_symlink(file, link);
    const CommandResult longer = run(kLongerPrompt, "--prompt-cache " + shell_quote(link));
    ASSERT_EQ(longer.exit_code, 0) << longer.err;
    EXPECT_EQ(count(longer.err, "warning"), 0u) << longer.err;
    EXPECT_NE(longer.err.find("1 states saved"), std::string::npos) << longer.err;
    EXPECT_TRUE(std::filesystem::is_symlink(link));
    const CommandResult again = run(kLongerPrompt, "--prompt-cache " + shell_quote(file));
    EXPECT_EQ(restored(again), prompt_tokens(again)) << again.err;
}

TEST_F(CacheCliTest, APromptFromAPipe) {
    const CommandResult piped = run_command("printf %s " + shell_quote(kPrompt) + " | timeout " +
                                            std::to_string(kTimeoutSeconds) + " " + shell_quote(DENDRO_EXE) +
                                            " run -m " + shell_quote(model.path()) +
                                            " -f /dev/stdin -n 16 --temp 0 -s 1 -t 1");
    ASSERT_EQ(piped.exit_code, 0) << piped.err;
    EXPECT_EQ(piped.out, run(kPrompt, "").out);
}

TEST_F(CacheCliTest, ARunRemovesTheTemporaryFilesOfKilledWritersOfItsPromptCache) {
    const std::string file = dir.file("prompt.dstate");
    const std::string stale = dir.file(test::temp_file_name("prompt.dstate", test::exited_process_id()));
    const std::string live = dir.file(test::temp_file_name("prompt.dstate", ::getpid()));
    test::write_file(stale, std::vector<uint8_t>{'s'});
    test::write_file(live, std::vector<uint8_t>{'l'});
    ASSERT_EQ(run(kPrompt, "--prompt-cache " + shell_quote(file)).exit_code, 0);
    EXPECT_FALSE(std::filesystem::exists(stale));
    EXPECT_TRUE(std::filesystem::exists(live));
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
    EXPECT_NE(info.out.find("mamba: 2 layers, conv 3 x 64, ssm 64 x 8, n_vocab 260"), std::string::npos);

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

// `cache clear` while other runs write: their temporary files are theirs; only those of dead writers go.
TEST_F(CacheCliTest, CacheClearKeepsTheTemporaryFilesOfLiveWriters) {
    ASSERT_EQ(run(kPrompt, "--cache-dir " + shell_quote(cache_dir)).exit_code, 0);
    const std::filesystem::path entries = std::filesystem::path(cache_dir) / "entries";
    const std::string entry = std::filesystem::directory_iterator(entries)->path().filename().string();
    const std::filesystem::path live = entries / test::temp_file_name(entry, ::getpid());
    const std::filesystem::path stale = entries / test::temp_file_name(entry, test::exited_process_id());
    test::write_file(live.string(), std::vector<uint8_t>{'l'});
    test::write_file(stale.string(), std::vector<uint8_t>{'s'});

    const CommandResult clear = dendro("cache clear " + shell_quote(cache_dir));
    ASSERT_EQ(clear.exit_code, 0) << clear.err;
    EXPECT_NE(clear.out.find("removed 1 entries"), std::string::npos) << clear.out;
    EXPECT_TRUE(std::filesystem::exists(live));
    EXPECT_FALSE(std::filesystem::exists(stale));
}

// "N states saved" counts the states written, not the checkpoints found already in the cache.
TEST_F(CacheCliTest, StatesSavedCountsOnlyTheStatesWritten) {
    const std::string flags = "--cache-dir " + shell_quote(cache_dir) + " --cache-every 16";
    const CommandResult first = run(kPrompt, flags);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    ASSERT_NE(first.err.find("4 states saved"), std::string::npos) << first.err;
    // Entry names are "<fingerprint>-<n_tokens>-<hash>...": by prefix length.
    std::map<int64_t, std::filesystem::path> by_length;
    for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(cache_dir) / "entries")) {
        std::istringstream fields(entry.path().filename().string());
        std::string fingerprint, n_tokens;
        std::getline(fields, fingerprint, '-');
        std::getline(fields, n_tokens, '-');
        by_length[std::stoll(n_tokens)] = entry.path();
    }
    ASSERT_EQ(by_length.size(), 4u);
    const auto at = [&by_length](size_t i) { return std::next(by_length.begin(), static_cast<long>(i))->second; };
    // The checkpoint at 48 holds the one at 32 (as if renamed): it matches by name but not by tokens, so it is
    // no hit but is there. Without the end-of-prompt entry the next run resumes at 32, finds 48 already
    // stored, and writes only the end of the prompt.
    std::filesystem::copy_file(at(1), at(2), std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(at(3));
    const CommandResult again = run(kPrompt, flags);
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(restored(again), "32") << again.err;
    EXPECT_NE(again.err.find("1 states saved"), std::string::npos) << again.err;
    EXPECT_EQ(again.out, first.out);
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

// The cache with a Mamba-2 model: checkpoints land on whole SSD chunks (--cache-every 16 is rounded up to
// 64), so a prompt resumed from one gives the uncached run's bits; a prompt resumed from another prompt's
// end is within float rounding and gives the same greedy text.
class Mamba2CacheCliTest : public CacheCliTest {
protected:
    test::TempModelFile mamba2{test::tiny_mamba2_hparams_byte_vocab(), GgmlType::F32, /*seed=*/5, /*tied=*/true,
                               test::byte_tokenizer_options()};
    const std::string long_prompt = kPrompt + kPrompt + kPrompt;  // 168 bytes: two whole chunks and a part
};

TEST_F(Mamba2CacheCliTest, CacheDirCheckpointsOnWholeChunksAndKeepsTheOutput) {
    const std::string flags = "--cache-dir " + shell_quote(cache_dir) + " --cache-every 16";
    const CommandResult first = run(long_prompt, flags, mamba2.path());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_NE(first.err.find("3 states saved"), std::string::npos) << first.err;  // 64, 128 and the end
    EXPECT_EQ(first.out, run(long_prompt, "", mamba2.path()).out);

    const std::string branch = long_prompt.substr(0, 70) + "and then a different ending.";
    const CommandResult resumed = run(branch, flags, mamba2.path());
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_EQ(restored(resumed), "64") << resumed.err;
    EXPECT_EQ(resumed.out, run(branch, "", mamba2.path()).out);

    const CommandResult again = run(long_prompt, flags, mamba2.path());
    EXPECT_EQ(restored(again), prompt_tokens(again)) << again.err;
    EXPECT_EQ(again.out, first.out);

    const std::string longer = long_prompt + " More.";
    const CommandResult extended = run(longer, flags, mamba2.path());
    EXPECT_EQ(restored(extended), prompt_tokens(first)) << extended.err;
    EXPECT_EQ(extended.out, run(longer, "", mamba2.path()).out);

    const CommandResult ls = dendro("cache ls " + shell_quote(cache_dir));
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
}

TEST_F(Mamba2CacheCliTest, PromptCacheFileRestoresAndKeepsTheOutput) {
    const std::string file = dir.file("prompt.dstate");
    const CommandResult first = run(long_prompt, "--prompt-cache " + shell_quote(file), mamba2.path());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    const CommandResult second = run(long_prompt, "--prompt-cache " + shell_quote(file), mamba2.path());
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_EQ(restored(second), prompt_tokens(second)) << second.err;
    EXPECT_EQ(second.out, first.out);
    // A Mamba-1 model's run never takes the Mamba-2 state: another fingerprint, a warning, the uncached text.
    const CommandResult other = run(long_prompt, "--prompt-cache " + shell_quote(file));
    ASSERT_EQ(other.exit_code, 0) << other.err;
    EXPECT_EQ(restored(other), "0") << other.err;
    EXPECT_EQ(other.out, run(long_prompt, "").out);
}

TEST_F(Mamba2CacheCliTest, CacheBenchSaysHowCloseTheCachedLogitsAre) {
    const std::string scratch = dir.file("bench");
    // A prefix of two whole chunks: bit-identical.
    const CommandResult whole = dendro("cache bench " + shell_quote(scratch) + " -m " + shell_quote(mamba2.path()) +
                                       " --prefix 128 --new 8 -r 1 -t 1");
    ASSERT_EQ(whole.exit_code, 0) << whole.err;
    EXPECT_NE(whole.out.find("logits identical to the cold prefill's"), std::string::npos) << whole.out;
    EXPECT_NE(whole.out.find("mamba2: 2 layers"), std::string::npos) << whole.out;
}

}  // namespace
}  // namespace dendro
