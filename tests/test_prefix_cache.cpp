// The prefix cache directory: exact and partial hits, misses, corrupt entries, LRU eviction under the size
// bound, several processes storing into one directory at once, and the byte-size parser of --cache-size.
// Then prefill through a store on the CPU backend: chunked, checkpointed and resumed prefills give the
// plain prefill's logits and state bit for bit, and generation resumed from a cache is the cold one.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "backend/backend.h"
#include "common/byte_size.h"
#include "cache/cached_prefill.h"
#include "common/error.h"
#include "model/model.h"
#include "cache/prefix_cache.h"
#include "cache/prompt_cache_file.h"
#include "random_model.h"
#include "random_model_file.h"
#include "cache/state_file.h"
#include "state_snapshot_fixture.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::random_snapshot;
using test::random_tokens;

const ModelFingerprint kModel{0x1111111111111111ULL, 0x2222222222222222ULL};
const ModelFingerprint kOtherModel{0x3333333333333333ULL, 0x4444444444444444ULL};
// Longer than the coarse clock that stamps file mtimes, so consecutive stores have distinct ages.
constexpr auto kClockTick = std::chrono::milliseconds(20);

std::vector<int32_t> concat_tokens(std::span<const int32_t> head, std::span<const int32_t> tail) {
    std::vector<int32_t> all(head.begin(), head.end());
    all.insert(all.end(), tail.begin(), tail.end());
    return all;
}

class PrefixCacheTest : public ::testing::Test {
protected:
    test::TempDir dir;
    std::string cache_dir = dir.file("cache");
    ModelHparams hp = test::tiny_state_hparams();
    std::vector<std::string> warnings;
    std::vector<int32_t> prompt = random_tokens(20, hp.n_vocab, 42);

    PrefixCache open_cache(uint64_t max_bytes = kDefaultPrefixCacheBytes, const ModelFingerprint& model = kModel) {
        return PrefixCache(CacheDirectory::open(cache_dir, /*create=*/true), model, hp, max_bytes,
                           [this](const std::string& message) { warnings.push_back(message); });
    }
    StateSnapshot snapshot_of(size_t n_tokens) {
        return random_snapshot(hp, std::vector<int32_t>(prompt.begin(), prompt.begin() + n_tokens), 42);
    }
    size_t n_entries() { return CacheDirectory::open(cache_dir, false).entries().size(); }
};

TEST_F(PrefixCacheTest, ExactHitReturnsTheStoredSnapshot) {
    PrefixCache cache = open_cache();
    EXPECT_FALSE(cache.longest_prefix(prompt));
    const StateSnapshot full = snapshot_of(prompt.size());
    cache.store(full, /*end_of_prompt=*/true);
    const auto hit = cache.longest_prefix(prompt);
    ASSERT_TRUE(hit);
    EXPECT_TRUE(test::same_bits(*hit, full));
    EXPECT_TRUE(warnings.empty());
}

TEST_F(PrefixCacheTest, PartialHitResumesFromTheLongestStoredPrefix) {
    PrefixCache cache = open_cache();
    for (size_t n : {8, 16, 20}) cache.store(snapshot_of(n), n == 20);
    const std::vector<int32_t> other_tail = random_tokens(10, hp.n_vocab, 99);

    const auto from_16 = cache.longest_prefix(concat_tokens(std::span(prompt).first(16), other_tail));
    ASSERT_TRUE(from_16);
    EXPECT_TRUE(test::same_bits(*from_16, snapshot_of(16)));

    const auto from_8 = cache.longest_prefix(concat_tokens(std::span(prompt).first(12), other_tail));
    ASSERT_TRUE(from_8);
    EXPECT_EQ(from_8->n_tokens(), 8);

    const auto extended = cache.longest_prefix(concat_tokens(prompt, other_tail));
    ASSERT_TRUE(extended);
    EXPECT_EQ(extended->n_tokens(), 20);

    EXPECT_FALSE(cache.longest_prefix(std::span(prompt).first(7)));
    std::vector<int32_t> first_differs = prompt;
    first_differs[0] = (first_differs[0] + 1) % static_cast<int32_t>(hp.n_vocab);
    EXPECT_FALSE(cache.longest_prefix(first_differs));
    EXPECT_TRUE(warnings.empty());
}

TEST_F(PrefixCacheTest, StoreSaysWhetherItWrote) {
    PrefixCache cache = open_cache();
    EXPECT_TRUE(cache.store(snapshot_of(20), true));
    EXPECT_FALSE(cache.store(snapshot_of(20), true));  // the entry exists: nothing written
    EXPECT_EQ(n_entries(), 1u);
    PrefixCache too_small = open_cache(state_file_size(snapshot_of(8)) - 1);
    EXPECT_FALSE(too_small.store(snapshot_of(8), true));
}

TEST_F(PrefixCacheTest, AnotherModelNeverHits) {
    open_cache().store(snapshot_of(20), true);
    PrefixCache other = open_cache(kDefaultPrefixCacheBytes, kOtherModel);
    EXPECT_FALSE(other.longest_prefix(prompt));
    EXPECT_TRUE(warnings.empty());
}

TEST_F(PrefixCacheTest, SnapshotOfOtherShapesIsNotRestored) {
    open_cache().store(snapshot_of(20), true);
    hp.d_state += 1;  // the same fingerprint claiming other shapes: never restore a state that does not fit
    EXPECT_FALSE(open_cache().longest_prefix(prompt));
}

TEST_F(PrefixCacheTest, CorruptEntryIsReportedRemovedAndMissed) {
    PrefixCache cache = open_cache();
    cache.store(snapshot_of(8), false);
    cache.store(snapshot_of(20), true);
    const CacheEntry longest = CacheDirectory::open(cache_dir, false).find(concat(kModel.hex(), "-20-"));
    std::vector<uint8_t> bytes = test::read_file(longest.path.string());
    bytes[bytes.size() / 2] ^= 0xff;
    test::write_file(longest.path.string(), bytes);

    const auto hit = cache.longest_prefix(prompt);
    ASSERT_TRUE(hit);  // falls back to the shorter entry
    EXPECT_EQ(hit->n_tokens(), 8);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("checksum"), std::string::npos) << warnings[0];
    EXPECT_FALSE(std::filesystem::exists(longest.path));
}

TEST_F(PrefixCacheTest, AnEntryIsJudgedByItsContentNotItsName) {
    PrefixCache cache = open_cache();
    cache.store(snapshot_of(20), true);
    const CacheDirectory d = CacheDirectory::open(cache_dir, false);
    // Renamed to claim it holds the first 8 tokens: the name matches a 10-token prompt, the content does not.
    const std::filesystem::path renamed =
        d.entry_path(kModel, 8, token_prefix_hash(std::span(prompt).first(8)));
    std::filesystem::rename(d.find(kModel.hex()).path, renamed);
    EXPECT_FALSE(cache.longest_prefix(std::span(prompt).first(10)));
    EXPECT_FALSE(cache.longest_prefix(prompt));
}

TEST_F(PrefixCacheTest, StoringAnExistingPrefixKeepsOneEntry) {
    PrefixCache cache = open_cache();
    cache.store(snapshot_of(20), true);
    cache.store(snapshot_of(20), true);
    EXPECT_EQ(n_entries(), 1u);
}

TEST_F(PrefixCacheTest, LeastRecentlyUsedEntriesAreEvictedBeyondTheSize) {
    const uint64_t max_bytes =
        state_file_size(snapshot_of(4)) + state_file_size(snapshot_of(5)) + state_file_size(snapshot_of(6));
    PrefixCache cache = open_cache(max_bytes);
    for (size_t n : {4, 5, 6}) {
        cache.store(snapshot_of(n), true);
        std::this_thread::sleep_for(kClockTick);
    }
    ASSERT_EQ(n_entries(), 3u);
    // Using the oldest makes it the newest: the next store evicts the 5-token entry instead.
    ASSERT_TRUE(cache.longest_prefix(std::span(prompt).first(4)));
    std::this_thread::sleep_for(kClockTick);
    cache.store(snapshot_of(3), true);

    std::vector<int64_t> lengths;
    uint64_t total = 0;
    for (const CacheEntry& e : CacheDirectory::open(cache_dir, false).entries()) {
        lengths.push_back(e.n_tokens);
        total += e.bytes;
    }
    std::sort(lengths.begin(), lengths.end());
    EXPECT_EQ(lengths, (std::vector<int64_t>{3, 4, 6}));
    EXPECT_LE(total, max_bytes);
}

TEST_F(PrefixCacheTest, SnapshotLargerThanTheCacheIsNotStored) {
    PrefixCache cache = open_cache(state_file_size(snapshot_of(20)) - 1);
    cache.store(snapshot_of(20), true);
    cache.store(snapshot_of(20), true);
    EXPECT_EQ(n_entries(), 0u);
    EXPECT_EQ(warnings.size(), 1u);  // said once, not for every checkpoint
}

TEST_F(PrefixCacheTest, ConcurrentWritersAndReadersShareADirectory) {
    constexpr int kWriters = 2;
    constexpr size_t kStoresPerWriter = 24;
    constexpr uint64_t kEntriesThatFit = 5;
    const uint64_t max_bytes = kEntriesThatFit * state_file_size(snapshot_of(10));
    open_cache(max_bytes);  // creates the directory before the writers race on it

    std::vector<pid_t> children;
    for (int w = 0; w < kWriters; ++w) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            // Writers store the same prompts (same entry names) and their own ones, evicting each other's.
            int failures = 0;
            try {
                PrefixCache cache = open_cache(max_bytes);
                for (size_t i = 0; i < kStoresPerWriter; ++i) {
                    const size_t n = 1 + (i % 2 == 0 ? i : i + static_cast<size_t>(w) * kStoresPerWriter) % 19;
                    cache.store(snapshot_of(n), true);
                    cache.longest_prefix(prompt);
                }
            } catch (const std::exception&) {
                ++failures;
            }
            ::_exit(failures == 0 && warnings.empty() ? 0 : 1);
        }
        children.push_back(pid);
    }
    // Meanwhile this process reads: whatever it finds must be whole and exact.
    PrefixCache reader = open_cache(max_bytes);
    for (int i = 0; i < 50; ++i) {
        if (const auto hit = reader.longest_prefix(prompt)) {
            EXPECT_TRUE(test::same_bits(*hit, snapshot_of(static_cast<size_t>(hit->n_tokens()))));
        }
    }
    for (pid_t pid : children) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a writer failed";
    }
    EXPECT_TRUE(warnings.empty()) << warnings.front();

    uint64_t total = 0;
    for (const CacheEntry& e : CacheDirectory::open(cache_dir, false).entries()) {
        total += e.bytes;
        EXPECT_NO_THROW(read_state_file(e.path.string(), kModel)) << e.id;
    }
    EXPECT_LE(total, max_bytes);
    for (const auto& file : std::filesystem::directory_iterator(std::filesystem::path(cache_dir) / "entries")) {
        EXPECT_EQ(file.path().extension(), ".dstate") << "left behind: " << file.path();
    }
}

TEST_F(PrefixCacheTest, OnlyADendroCacheOrAnEmptyDirectoryIsOpened) {
    EXPECT_THROW(CacheDirectory::open(dir.file("missing"), /*create=*/false), Error);
    const std::string foreign = dir.file("foreign");
    std::filesystem::create_directories(foreign);
    test::write_file(foreign + "/precious.txt", std::vector<uint8_t>{'x'});
    EXPECT_THROW(CacheDirectory::open(foreign, /*create=*/true), Error);
    EXPECT_THROW(CacheDirectory::open(foreign, /*create=*/false), Error);
    EXPECT_TRUE(std::filesystem::exists(foreign + "/precious.txt"));

    const CacheDirectory made = CacheDirectory::open(dir.file("fresh"), /*create=*/true);
    EXPECT_TRUE(std::filesystem::exists(made.path() / kCacheLockFile));
    EXPECT_NO_THROW(CacheDirectory::open(dir.file("fresh"), /*create=*/false));
}

TEST_F(PrefixCacheTest, ClearAndRemoveTakeOnlyCacheFiles) {
    PrefixCache cache = open_cache();
    for (size_t n : {5, 10, 20}) cache.store(snapshot_of(n), true);
    const CacheDirectory d = CacheDirectory::open(cache_dir, false);
    EXPECT_THROW(d.find(""), Error);
    EXPECT_THROW(d.find(kModel.hex()), Error);  // names three entries
    const CacheEntry ten = d.find(concat(kModel.hex(), "-10-"));
    EXPECT_EQ(ten.n_tokens, 10);
    EXPECT_EQ(d.remove({ten}), 1u);
    EXPECT_EQ(n_entries(), 2u);
    EXPECT_EQ(d.clear(), 2u);
    EXPECT_EQ(n_entries(), 0u);
    EXPECT_TRUE(std::filesystem::exists(d.path() / kCacheLockFile));
}

TEST(ByteSize, ParsesUnitsAndRejectsNonsense) {
    EXPECT_EQ(parse_byte_size("100"), 100u);
    EXPECT_EQ(parse_byte_size("2G"), uint64_t{2} << 30);
    EXPECT_EQ(parse_byte_size("512M"), uint64_t{512} << 20);
    EXPECT_EQ(parse_byte_size("1.5GiB"), uint64_t{3} << 29);
    EXPECT_EQ(parse_byte_size("4kB"), 4096u);
    for (const char* bad : {"", "G", "-1", "0", "2X", "2GB!", "1.2.3M", "99999999999T"}) {
        EXPECT_THROW(parse_byte_size(bad), Error) << bad;
    }
    EXPECT_EQ(format_byte_size(512), "512 B");
    EXPECT_EQ(format_byte_size(uint64_t{3} << 29), "1.5 GiB");
}

// ---- prefill through a store, on the CPU backend ----

bool same_floats(std::span<const float> a, std::span<const float> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

class CachedPrefillTest : public ::testing::Test {
protected:
    static constexpr int64_t kEvery = 16;
    static constexpr int kSlots = 2;

    void SetUp() override {
        model_path = dir.file("model.gguf");
        write_random_mamba_gguf(model_path, test::tiny_hparams_byte_vocab(), GgmlType::F32, /*seed=*/5, /*tied=*/false);
        model = Model::load(model_path);
        hp = model->hparams();
        BackendOptions options;
        options.n_seq_max = kSlots;
        options.n_threads = 1;  // a tiny model: threads would only wait on each other
        backend = make_cpu_backend(*model, options);
        fingerprint = fingerprint_model_file(model->gguf(), "");
        prompt = random_tokens(100, hp.n_vocab, 11);
    }

    PrefixCache open_cache() {
        return PrefixCache(CacheDirectory::open(dir.file("cache"), true), fingerprint, hp, kDefaultPrefixCacheBytes,
                           [this](const std::string& message) { warnings.push_back(message); });
    }

    // Plain whole-prompt prefill on slot 1: the reference.
    StateSnapshot plain(std::span<const int32_t> tokens) {
        std::vector<float> logits(static_cast<size_t>(hp.n_vocab));
        backend->reset(1);
        backend->prefill(1, tokens, logits, false);
        return take_snapshot(*backend, 1, tokens, logits);
    }

    CachedPrefillStats cached(std::span<const int32_t> tokens, PrefixStore* store, std::vector<float>& logits) {
        logits.assign(static_cast<size_t>(hp.n_vocab), 0.0f);
        return prefill_with_cache(*backend, 0, tokens, store, kEvery, logits).finish();
    }

    void expect_matches_plain(std::span<const int32_t> tokens, std::span<const float> logits) {
        const StateSnapshot reference = plain(tokens);
        EXPECT_TRUE(same_floats(logits, reference.last_logits)) << "logits differ";
        SequenceState state;
        backend->read_state(0, state);
        EXPECT_TRUE(same_floats(state.conv, reference.state.conv)) << "conv windows differ";
        EXPECT_TRUE(same_floats(state.ssm, reference.state.ssm)) << "SSM states differ";
    }

    // Greedy continuation of slot 0 from `logits`: token ids and the logits of every step.
    std::pair<std::vector<int32_t>, std::vector<float>> greedy(std::vector<float> logits, int steps) {
        std::vector<int32_t> ids;
        std::vector<float> all;
        for (int i = 0; i < steps; ++i) {
            const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
            ids.push_back(static_cast<int32_t>(best));
            const int seqs[] = {0};
            const int32_t tokens[] = {ids.back()};
            backend->decode(seqs, tokens, logits);
            all.insert(all.end(), logits.begin(), logits.end());
        }
        return {ids, all};
    }

    test::TempDir dir;
    std::string model_path;
    std::unique_ptr<Model> model;
    ModelHparams hp;
    std::unique_ptr<Backend> backend;
    ModelFingerprint fingerprint;
    std::vector<int32_t> prompt;
    std::vector<std::string> warnings;
};

TEST_F(CachedPrefillTest, ColdCheckpointedPrefillIsThePlainPrefill) {
    PrefixCache cache = open_cache();
    std::vector<float> logits;
    const CachedPrefillStats stats = cached(prompt, &cache, logits);
    EXPECT_EQ(stats.reused_tokens, 0);
    EXPECT_EQ(stats.computed_tokens, 100);
    EXPECT_EQ(stats.snapshots_stored, 100 / kEvery + 1);  // checkpoints at 16..96, and the end
    expect_matches_plain(prompt, logits);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
}

TEST_F(CachedPrefillTest, WithoutAStoreItIsThePlainPrefill) {
    std::vector<float> logits;
    const CachedPrefillStats stats = cached(prompt, nullptr, logits);
    EXPECT_EQ(stats.computed_tokens, 100);
    expect_matches_plain(prompt, logits);
}

TEST_F(CachedPrefillTest, PartialHitResumesFromACheckpointExactly) {
    PrefixCache cache = open_cache();
    std::vector<float> logits;
    cached(prompt, &cache, logits);
    const std::vector<int32_t> other = concat_tokens(std::span(prompt).first(40), random_tokens(30, hp.n_vocab, 12));
    const CachedPrefillStats stats = cached(other, &cache, logits);
    EXPECT_EQ(stats.reused_tokens, 32);
    EXPECT_EQ(stats.computed_tokens, 38);
    expect_matches_plain(other, logits);
}

TEST_F(CachedPrefillTest, ExactHitComputesNothingAndGenerationIsTheColdOne) {
    std::vector<float> cold_logits;
    cached(prompt, nullptr, cold_logits);
    const auto cold = greedy(cold_logits, 12);

    PrefixCache cache = open_cache();
    std::vector<float> logits;
    cached(prompt, &cache, logits);
    const CachedPrefillStats stats = cached(prompt, &cache, logits);
    EXPECT_EQ(stats.reused_tokens, 100);
    EXPECT_EQ(stats.computed_tokens, 0);
    EXPECT_EQ(stats.snapshots_stored, 0);
    const auto resumed = greedy(logits, 12);
    EXPECT_EQ(resumed.first, cold.first);
    EXPECT_TRUE(same_floats(resumed.second, cold.second));
}

TEST_F(CachedPrefillTest, ForkAndRestoreIntoAnotherSlotContinueIdentically) {
    std::vector<float> logits;
    cached(prompt, nullptr, logits);
    const StateSnapshot at_prompt = take_snapshot(*backend, 0, prompt, logits);
    backend->copy_state(0, 1);
    const int both[] = {0, 1};
    const int32_t next[] = {7, 7};
    std::vector<float> two(2 * static_cast<size_t>(hp.n_vocab));
    backend->decode(both, next, two);
    EXPECT_TRUE(same_floats(std::span(two).first(hp.n_vocab), std::span(two).subspan(hp.n_vocab)));

    // Slot 1 has moved on; restoring the snapshot takes it back to the end of the prompt.
    restore_snapshot(*backend, 1, at_prompt);
    const int one[] = {1};
    const int32_t seven[] = {7};
    std::vector<float> again(static_cast<size_t>(hp.n_vocab));
    backend->decode(one, seven, again);
    EXPECT_TRUE(same_floats(again, std::span(two).first(hp.n_vocab)));

    StateSnapshot wrong = at_prompt;
    wrong.state.shape.d_state += 1;
    EXPECT_THROW(restore_snapshot(*backend, 1, wrong), Error);
}

TEST_F(CachedPrefillTest, PromptCacheFileSavesRestoresAndRefusesAnotherModel) {
    const std::string file = dir.file("prompt.dstate");
    const WarningSink sink = [this](const std::string& message) { warnings.push_back(message); };
    PromptCacheFile store(file, fingerprint, hp, sink);
    std::vector<float> logits;
    const std::span<const int32_t> first = std::span(prompt).first(60);
    {
        logits.resize(static_cast<size_t>(hp.n_vocab));
        CachedPrefill prefill = prefill_with_cache(*backend, 0, first, &store, kEvery, logits);
        EXPECT_EQ(prefill.reused_tokens(), 0);
    }  // not finished explicitly: the destructor waits for the write
    ASSERT_TRUE(std::filesystem::exists(file));
    EXPECT_EQ(read_state_file(file, fingerprint).n_tokens(), 60);

    const CachedPrefillStats longer = cached(prompt, &store, logits);
    EXPECT_EQ(longer.reused_tokens, 60);
    EXPECT_EQ(longer.computed_tokens, 40);
    expect_matches_plain(prompt, logits);
    EXPECT_EQ(read_state_file(file, fingerprint).n_tokens(), 100);  // rewritten for the longer prompt

    // The same file read for another model: a warning, the whole prompt computed, the file replaced.
    ModelFingerprint other = fingerprint;
    other.low ^= 1;
    PromptCacheFile foreign(file, other, hp, sink);
    const CachedPrefillStats refused = cached(prompt, &foreign, logits);
    EXPECT_EQ(refused.reused_tokens, 0);
    expect_matches_plain(prompt, logits);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("another model"), std::string::npos) << warnings[0];
    EXPECT_NO_THROW(read_state_file(file, other));

    // Truncated: a warning and a full, correct prefill.
    std::vector<uint8_t> bytes = test::read_file(file);
    bytes.resize(bytes.size() / 2);
    test::write_file(file, bytes);
    EXPECT_EQ(cached(prompt, &foreign, logits).reused_tokens, 0);
    expect_matches_plain(prompt, logits);
    EXPECT_EQ(warnings.size(), 2u);
}

// A store whose directory has become unusable: every operation fails.
class BrokenStore : public PrefixStore {
public:
    using PrefixStore::PrefixStore;
    std::optional<StateSnapshot> longest_prefix(std::span<const int32_t>) override { fail("lookup broke"); }
    bool store(const StateSnapshot&, bool) override { fail("store broke"); }
    bool keeps_checkpoints() const override { return true; }
};

TEST_F(CachedPrefillTest, AStoreThatFailsEverywhereOnlyWarns) {
    BrokenStore broken([this](const std::string& message) { warnings.push_back(message); });
    std::vector<float> logits;
    const CachedPrefillStats stats = cached(prompt, &broken, logits);
    EXPECT_EQ(stats.reused_tokens, 0);
    EXPECT_EQ(stats.snapshots_stored, 0);
    ASSERT_EQ(warnings.size(), 2u);
    EXPECT_NE(warnings[0].find("lookup broke"), std::string::npos);
    EXPECT_NE(warnings[1].find("store broke"), std::string::npos);
    expect_matches_plain(prompt, logits);
}

TEST_F(CachedPrefillTest, AStoreThatCannotWriteOnlyWarns) {
    PrefixCache cache = open_cache();
    const std::filesystem::path entries = std::filesystem::path(dir.file("cache")) / "entries";
    std::filesystem::remove_all(entries);
    test::write_file(entries.string(), std::vector<uint8_t>{'x'});  // a file where the entries should go
    std::vector<float> logits;
    const CachedPrefillStats stats = cached(prompt, &cache, logits);
    EXPECT_EQ(stats.snapshots_stored, 0);
    EXPECT_EQ(warnings.size(), 1u);  // once, then the store is left alone
    expect_matches_plain(prompt, logits);
}

}  // namespace
}  // namespace dendro
