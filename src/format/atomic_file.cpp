// Atomic replacement of a file: temp file beside the target, fsync, rename, fsync of the directory.
#include "format/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <random>

#include "common/error.h"

namespace dendro {
namespace {

constexpr mode_t kNewFileMode = 0666;  // narrowed by the umask, like any file the user creates
// A temp file is named <target><kTempMarker><pid>-<kSuffixHexDigits lowercase hex digits>.
constexpr std::string_view kTempMarker = ".tmp-";
constexpr size_t kSuffixHexDigits = 16;

std::string random_suffix() {
    std::random_device entropy;
    const uint64_t value = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
    char buffer[kSuffixHexDigits + 1];
    std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(value));
    return buffer;
}

struct TempFileName {
    std::string_view target;
    pid_t writer;
};

// "<target>.tmp-<pid>-<16 hex digits>" -> its parts; nullopt for any other name.
std::optional<TempFileName> parse_temp_file_name(std::string_view name) {
    const auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
    if (name.size() < kSuffixHexDigits + 1) return std::nullopt;
    const std::string_view hex = name.substr(name.size() - kSuffixHexDigits);
    if (!std::all_of(hex.begin(), hex.end(), is_hex) || name[name.size() - kSuffixHexDigits - 1] != '-') {
        return std::nullopt;
    }
    const std::string_view head = name.substr(0, name.size() - kSuffixHexDigits - 1);  // <target>.tmp-<pid>
    const size_t marker = head.rfind(kTempMarker);
    if (marker == std::string_view::npos || marker == 0) return std::nullopt;
    const std::string_view pid = head.substr(marker + kTempMarker.size());
    TempFileName parsed{head.substr(0, marker), 0};
    const auto [end, ec] = std::from_chars(pid.data(), pid.data() + pid.size(), parsed.writer);
    // Digits only (from_chars takes a '-'): kill() treats pids of 0 and below as process groups.
    if (ec != std::errc() || end != pid.data() + pid.size() || pid.front() == '-' || parsed.writer < 1) {
        return std::nullopt;
    }
    return parsed;
}

// Conservative: a process we may not signal (another user's) is alive.
bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

std::filesystem::path directory_of(const std::string& path) {
    const std::filesystem::path directory = std::filesystem::path(path).parent_path();
    return directory.empty() ? std::filesystem::path(".") : directory;
}

// Makes the rename itself durable. Failure here is not fatal: the data is already safe in the file.
void sync_directory_of(const std::string& path) {
    const int fd = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

size_t remove_stale_temp_files(const std::filesystem::path& dir,
                               const std::function<bool(std::string_view target_name)>& is_target) {
    size_t removed = 0;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const std::optional<TempFileName> temp = parse_temp_file_name(name);
        std::error_code item_ec;
        if (!temp || !is_target(temp->target) || process_exists(temp->writer) ||
            !std::filesystem::is_regular_file(it->symlink_status(item_ec))) {
            continue;
        }
        if (std::filesystem::remove(it->path(), item_ec)) ++removed;
    }
    return removed;
}

AtomicFileWriter::AtomicFileWriter(std::string target_path) : target_(std::move(target_path)) {
    const std::string target_name = std::filesystem::path(target_).filename().string();
    remove_stale_temp_files(directory_of(target_), [&target_name](std::string_view name) { return name == target_name; });
    constexpr int kAttempts = 8;  // a clash of two random 64-bit names is all but impossible; retry anyway
    for (int attempt = 0; attempt < kAttempts && file_ == nullptr; ++attempt) {
        temp_ = concat(target_, kTempMarker, ::getpid(), "-", random_suffix());
        const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kNewFileMode);
        if (fd < 0) {
            if (errno == EEXIST) continue;
            fail(target_, ": cannot create temporary file ", temp_, ": ", std::strerror(errno));
        }
        file_ = ::fdopen(fd, "wb");
        if (file_ == nullptr) {
            const int err = errno;
            ::close(fd);
            ::unlink(temp_.c_str());
            fail(target_, ": cannot open temporary file ", temp_, ": ", std::strerror(err));
        }
    }
    if (file_ == nullptr) fail(target_, ": cannot create a unique temporary file beside it");
}

AtomicFileWriter::~AtomicFileWriter() {
    if (committed_) return;
    if (file_ != nullptr) std::fclose(file_);
    ::unlink(temp_.c_str());
}

void AtomicFileWriter::write(std::span<const uint8_t> bytes) { write(bytes.data(), bytes.size()); }

void AtomicFileWriter::write(const void* data, size_t size) {
    if (committed_) fail(target_, ": write after commit");
    if (size == 0) return;
    if (std::fwrite(data, 1, size, file_) != size) {
        fail(target_, ": write to ", temp_, " failed after ", written_, " bytes: ", std::strerror(errno));
    }
    written_ += size;
}

void AtomicFileWriter::commit() {
    if (committed_) fail(target_, ": committed twice");
    if (std::fflush(file_) != 0) fail(target_, ": flushing ", temp_, " failed: ", std::strerror(errno));
    if (::fsync(::fileno(file_)) != 0) fail(target_, ": fsync of ", temp_, " failed: ", std::strerror(errno));
    const int close_result = std::fclose(file_);
    file_ = nullptr;
    if (close_result != 0) fail(target_, ": closing ", temp_, " failed: ", std::strerror(errno));
    if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
        fail(target_, ": cannot rename ", temp_, " onto it: ", std::strerror(errno));
    }
    committed_ = true;
    sync_directory_of(target_);
}

}  // namespace dendro
