#include "cache/prefix_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>

#include "format/atomic_file.h"
#include "common/error.h"
#include "cache/state_file.h"

namespace dendro {
namespace fs = std::filesystem;

namespace {

constexpr const char* kEntriesDir = "entries";
constexpr const char* kFingerprintsDir = "fingerprints";
constexpr std::string_view kEntrySuffix = ".dstate";
constexpr size_t kPrefixHashHexDigits = 16;
constexpr mode_t kLockFileMode = 0666;  // narrowed by the umask, like any file the user creates

// flock(LOCK_EX) on DIR/dendro-cache.lock for the lifetime of the object.
class DirectoryLock {
public:
    explicit DirectoryLock(const fs::path& lock_path) {
        fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kLockFileMode);
        if (fd_ < 0) fail(lock_path.string(), ": cannot open the cache lock: ", std::strerror(errno));
        while (::flock(fd_, LOCK_EX) != 0) {
            if (errno != EINTR) {
                const int err = errno;
                ::close(fd_);
                fail(lock_path.string(), ": cannot lock: ", std::strerror(err));
            }
        }
    }
    ~DirectoryLock() { ::close(fd_); }  // closing releases the flock
    DirectoryLock(const DirectoryLock&) = delete;
    DirectoryLock& operator=(const DirectoryLock&) = delete;

private:
    int fd_ = -1;
};

bool parse_hex64(std::string_view text, uint64_t& out) {
    if (text.size() != kPrefixHashHexDigits) return false;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, 16);
    return ec == std::errc() && end == text.data() + text.size() &&
           std::all_of(text.begin(), text.end(), [](char c) { return !std::isupper(static_cast<unsigned char>(c)); });
}

// "<fingerprint>-<n_tokens>-<prefix hash>.v<version>.dstate" -> entry fields; nullopt for any other name.
std::optional<CacheEntry> parse_entry_name(const std::string& name) {
    if (name.size() <= kEntrySuffix.size() || !name.ends_with(kEntrySuffix)) return std::nullopt;
    const std::string stem = name.substr(0, name.size() - kEntrySuffix.size());
    const size_t dot_v = stem.rfind(".v");
    if (dot_v == std::string::npos) return std::nullopt;
    CacheEntry entry;
    entry.id = stem.substr(0, dot_v);
    const std::string_view version = std::string_view(stem).substr(dot_v + 2);
    if (auto [end, ec] = std::from_chars(version.data(), version.data() + version.size(), entry.version);
        ec != std::errc() || end != version.data() + version.size()) {
        return std::nullopt;
    }
    const size_t dash1 = entry.id.find('-');
    const size_t dash2 = entry.id.rfind('-');
    if (dash1 == std::string::npos || dash1 == dash2) return std::nullopt;
    const auto model = ModelFingerprint::from_hex(std::string_view(entry.id).substr(0, dash1));
    if (!model) return std::nullopt;
    entry.model = *model;
    const std::string_view count = std::string_view(entry.id).substr(dash1 + 1, dash2 - dash1 - 1);
    if (auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), entry.n_tokens);
        ec != std::errc() || end != count.data() + count.size() || entry.n_tokens < 1) {
        return std::nullopt;
    }
    if (!parse_hex64(std::string_view(entry.id).substr(dash2 + 1), entry.prefix_hash)) return std::nullopt;
    return entry;
}

bool is_directory_empty(const fs::path& dir) {
    std::error_code ec;
    return fs::directory_iterator(dir, ec) == fs::directory_iterator() && !ec;
}

// Removes the temp files that killed writers of entries left in `dir` (those of live writers are kept).
void remove_stale_entry_temp_files(const fs::path& dir) {
    remove_stale_temp_files(dir, [](std::string_view target) { return parse_entry_name(std::string(target)).has_value(); });
}

// Hashes of tokens[0..n) for each n in `lengths` (any order), in one pass over the tokens.
std::map<int64_t, uint64_t> prefix_hashes(std::span<const int32_t> tokens, std::vector<int64_t> lengths) {
    std::sort(lengths.begin(), lengths.end());
    std::map<int64_t, uint64_t> hashes;
    XXH3_state_t* state = XXH3_createState();
    if (state == nullptr) throw std::bad_alloc();
    XXH3_64bits_reset(state);
    int64_t hashed = 0;
    for (int64_t n : lengths) {
        XXH3_64bits_update(state, tokens.data() + hashed, static_cast<size_t>(n - hashed) * sizeof(int32_t));
        hashed = n;
        hashes[n] = XXH3_64bits_digest(state);
    }
    XXH3_freeState(state);
    return hashes;
}

}  // namespace

uint64_t token_prefix_hash(std::span<const int32_t> tokens) { return XXH3_64bits(tokens.data(), tokens.size_bytes()); }

// ---- CacheDirectory ----

CacheDirectory CacheDirectory::open(const std::string& dir, bool create) {
    const fs::path root(dir);
    std::error_code ec;
    if (!fs::exists(root, ec)) {
        if (!create) fail(dir, ": no such cache directory");
        fs::create_directories(root, ec);
        if (ec) fail(dir, ": cannot create the cache directory: ", ec.message());
    }
    if (!fs::is_directory(root, ec)) fail(dir, ": not a directory");
    const fs::path lock = root / kCacheLockFile;
    if (!fs::exists(lock, ec)) {
        // Every opener makes the lock file before anything else, so a directory that has filled since the
        // first look holds the lock by now when a concurrent opener filled it: look again before refusing.
        if (!create || (!is_directory_empty(root) && !fs::exists(lock, ec))) {
            fail(dir, ": not a Dendro cache directory (it has no ", kCacheLockFile, ")",
                 create ? "; give a new or empty directory" : "");
        }
        // The lock file is made first so a concurrent opener sees either an empty directory or a cache.
        const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kLockFileMode);
        if (fd < 0) fail(lock.string(), ": cannot create: ", std::strerror(errno));
        ::close(fd);
    }
    CacheDirectory result(root);
    if (create) {
        fs::create_directories(result.entries_dir(), ec);
        if (ec) fail(result.entries_dir().string(), ": cannot create: ", ec.message());
    }
    return result;
}

fs::path CacheDirectory::entries_dir() const { return root_ / kEntriesDir; }
fs::path CacheDirectory::fingerprint_memo_dir() const { return root_ / kFingerprintsDir; }

fs::path CacheDirectory::entry_path(const ModelFingerprint& model, int64_t n_tokens, uint64_t prefix_hash) const {
    char hash[kPrefixHashHexDigits + 1];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(prefix_hash));
    return entries_dir() / concat(model.hex(), '-', n_tokens, '-', hash, ".v", kStateFileVersion, kEntrySuffix);
}

std::vector<CacheEntry> CacheDirectory::entries() const {
    std::vector<CacheEntry> result;
    std::error_code ec;
    for (fs::directory_iterator it(entries_dir(), ec), end; !ec && it != end; it.increment(ec)) {
        std::optional<CacheEntry> entry = parse_entry_name(it->path().filename().string());
        if (!entry) continue;
        entry->path = it->path();
        std::error_code stat_ec;
        entry->bytes = fs::file_size(entry->path, stat_ec);
        if (stat_ec) continue;  // removed since it was listed
        entry->last_used = fs::last_write_time(entry->path, stat_ec);
        if (stat_ec) continue;
        result.push_back(std::move(*entry));
    }
    return result;
}

CacheEntry CacheDirectory::find(const std::string& id_prefix) const {
    std::vector<CacheEntry> matches;
    for (CacheEntry& entry : entries()) {
        if (!id_prefix.empty() && entry.id.starts_with(id_prefix)) matches.push_back(std::move(entry));
    }
    if (matches.empty()) fail(root_.string(), ": no cache entry '", id_prefix, "'");
    if (matches.size() > 1) fail(root_.string(), ": '", id_prefix, "' names ", matches.size(), " entries; give more of the id");
    return matches.front();
}

void CacheDirectory::touch(const fs::path& entry) const {
    std::error_code ec;  // a vanished entry needs no touching
    fs::last_write_time(entry, fs::file_time_type::clock::now(), ec);
}

size_t CacheDirectory::evict_to(uint64_t max_bytes) const {
    DirectoryLock lock(root_ / kCacheLockFile);
    remove_stale_entry_temp_files(entries_dir());
    std::vector<CacheEntry> all = entries();
    uint64_t total = 0;
    for (const CacheEntry& e : all) total += e.bytes;
    std::sort(all.begin(), all.end(), [](const CacheEntry& a, const CacheEntry& b) { return a.last_used < b.last_used; });
    size_t removed = 0;
    for (const CacheEntry& e : all) {
        if (total <= max_bytes) break;
        std::error_code remove_ec;
        fs::remove(e.path, remove_ec);
        total -= e.bytes;
        ++removed;
    }
    return removed;
}

size_t CacheDirectory::remove(const std::vector<CacheEntry>& victims) const {
    DirectoryLock lock(root_ / kCacheLockFile);
    size_t removed = 0;
    for (const CacheEntry& e : victims) {
        std::error_code ec;
        if (fs::remove(e.path, ec)) ++removed;
    }
    return removed;
}

size_t CacheDirectory::clear() const {
    DirectoryLock lock(root_ / kCacheLockFile);
    size_t removed = 0;
    for (const CacheEntry& e : entries()) {
        std::error_code ec;
        if (fs::remove(e.path, ec)) ++removed;
    }
    remove_stale_entry_temp_files(entries_dir());  // a live run's state being written is its own
    std::error_code ec;
    for (fs::directory_iterator it(fingerprint_memo_dir(), ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code item_ec;
        if (it->path().extension() == ".txt") fs::remove(it->path(), item_ec);
    }
    return removed;
}

// ---- PrefixCache ----

PrefixCache::PrefixCache(CacheDirectory dir, const ModelFingerprint& model, const ModelHparams& hparams,
                         uint64_t max_bytes, WarningSink warn)
    : PrefixStore(std::move(warn)), dir_(std::move(dir)), model_(model), hparams_(hparams), max_bytes_(max_bytes) {}

std::optional<StateSnapshot> PrefixCache::longest_prefix(std::span<const int32_t> tokens) {
    std::vector<CacheEntry> candidates;
    for (CacheEntry& e : dir_.entries()) {
        if (e.model == model_ && e.version == kStateFileVersion && e.n_tokens <= static_cast<int64_t>(tokens.size())) {
            candidates.push_back(std::move(e));
        }
    }
    if (candidates.empty()) return std::nullopt;
    std::vector<int64_t> lengths;
    for (const CacheEntry& e : candidates) lengths.push_back(e.n_tokens);
    const std::map<int64_t, uint64_t> hashes = prefix_hashes(tokens, lengths);
    std::sort(candidates.begin(), candidates.end(),
              [](const CacheEntry& a, const CacheEntry& b) { return a.n_tokens > b.n_tokens; });

    for (const CacheEntry& e : candidates) {
        if (hashes.at(e.n_tokens) != e.prefix_hash) continue;
        StateSnapshot snapshot;
        try {
            snapshot = read_state_file(e.path.string(), model_);
        } catch (const Error& error) {
            std::error_code ec;
            if (!fs::exists(e.path, ec)) continue;  // evicted or replaced since it was listed
            warn(concat("prefix cache: ", error.what(), "; removing the entry"));
            dir_.remove({e});
            continue;
        }
        // The file's own token count and ids decide, not its name: a hash collision or a renamed file misses.
        const bool same_tokens = snapshot.n_tokens() == e.n_tokens &&
                                 std::equal(snapshot.tokens.begin(), snapshot.tokens.end(), tokens.begin());
        if (!same_tokens || !snapshot.fits(hparams_)) continue;
        dir_.touch(e.path);
        return snapshot;
    }
    return std::nullopt;
}

bool PrefixCache::store(const StateSnapshot& snapshot, bool /*end_of_prompt*/) {
    const fs::path path = dir_.entry_path(model_, snapshot.n_tokens(), token_prefix_hash(snapshot.tokens));
    std::error_code ec;
    if (fs::exists(path, ec)) {  // the same prefix of the same model: the same state
        dir_.touch(path);
        return false;
    }
    const uint64_t bytes = state_file_size(snapshot);
    if (bytes > max_bytes_) {
        if (!warned_too_large_) {
            warn(concat("prefix cache: a state of ", bytes, " bytes does not fit the cache size of ", max_bytes_,
                        " bytes; nothing is cached"));
            warned_too_large_ = true;
        }
        return false;
    }
    fs::create_directories(path.parent_path(), ec);  // `cache clear` keeps it, but a user may have removed it
    write_state_file(path.string(), model_, snapshot);
    dir_.evict_to(max_bytes_);
    return true;
}

}  // namespace dendro
