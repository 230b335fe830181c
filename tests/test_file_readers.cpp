// Every reader of a path the user names opens regular files only, and never blocks on the way: a FIFO, a
// directory or a device is refused with an error naming the path (and what it is) at once. Only text inputs
// (prompts) read pipes and FIFOs, to their end.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "common/error.h"
#include "hf_json.h"
#include "format/mapped_file.h"
#include "model/model_fingerprint.h"
#include "format/regular_file.h"
#include "cache/state_file.h"
#include "temp_dir.h"

namespace dendro {
namespace {

// Far longer than any refusal takes, far shorter than a hang that would stall the suite.
constexpr auto kNoHang = std::chrono::seconds(5);

std::string make_fifo(const test::TempDir& dir) {
    const std::string path = dir.file("fifo");
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0);
    return path;
}

// The message of the dendro::Error that `read` throws, expected within kNoHang. A reader stuck opening the
// FIFO is let go (by opening its write end) so that the test fails instead of hanging.
std::string error_within_time(const std::string& fifo, const std::function<void()>& read) {
    std::future<std::string> result = std::async(std::launch::async, [&read]() -> std::string {
        try {
            read();
        } catch (const Error& e) {
            return e.what();
        }
        return "no error";
    });
    if (result.wait_for(kNoHang) != std::future_status::ready) {
        ADD_FAILURE() << "blocked opening the FIFO " << fifo;
        const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (writer >= 0) ::close(writer);
    }
    return result.get();
}

void expect_refused(const std::string& message, const std::string& path, const std::string& kind) {
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find("not a regular file"), std::string::npos) << message;
    EXPECT_NE(message.find(kind), std::string::npos) << message;
}

TEST(FileReadersTest, AFifoIsRefusedWithoutBlocking) {
    const test::TempDir dir;
    const std::string fifo = make_fifo(dir);
    expect_refused(error_within_time(fifo, [&] { RegularFile file(fifo); }), fifo, "FIFO");
    expect_refused(error_within_time(fifo, [&] { MappedFile file(fifo); }), fifo, "FIFO");
    expect_refused(error_within_time(fifo, [&] { read_state_file_header(fifo); }), fifo, "FIFO");
    expect_refused(error_within_time(fifo, [&] { read_state_file(fifo, ModelFingerprint{}); }), fifo, "FIFO");
    expect_refused(error_within_time(fifo, [&] { read_hf_json_file(fifo); }), fifo, "FIFO");
    expect_refused(error_within_time(fifo, [&] { read_whole_file(fifo); }), fifo, "FIFO");
}

TEST(FileReadersTest, ADirectoryOrADeviceIsRefused) {
    const test::TempDir dir;
    for (const auto& [path_binding, kind] : {std::pair<std::string, std::string>{dir.path(), "directory"},
                                             {"/dev/null", "character device"}}) {
        const std::string& path = path_binding;  // clang < 16 cannot capture a structured binding
        for (const std::function<void()>& read : std::initializer_list<std::function<void()>>{
                 [&] { RegularFile file(path); }, [&] { MappedFile file(path); },
                 [&] { read_state_file_header(path); }, [&] { read_hf_json_file(path); },
                 [&] { read_whole_file(path, kAnyFileSize, PipeInput::accept); }}) {
            try {
                read();
                ADD_FAILURE() << "no error for " << path;
            } catch (const Error& e) {
                expect_refused(e.what(), path, kind);
            }
        }
    }
}

TEST(FileReadersTest, AMissingFileIsNamed) {
    const test::TempDir dir;
    const std::string missing = dir.file("missing");
    try {
        RegularFile file(missing);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(missing + ": cannot open: "), std::string::npos) << e.what();
    }
}

TEST(FileReadersTest, ARegularFileIsReadWhole) {
    const test::TempDir dir;
    const std::string path = dir.file("text");
    test::write_file(path, std::vector<uint8_t>{'a', 'b', 'c'});
    const RegularFile file(path);
    EXPECT_EQ(file.size(), 3u);
    EXPECT_EQ(read_whole_file(path), "abc");
    EXPECT_EQ(read_whole_file(path, 3), "abc");
    EXPECT_THROW(read_whole_file(path, 2), Error);
}

TEST(FileReadersTest, TextInputsReadAFifoToItsEnd) {
    const test::TempDir dir;
    const std::string fifo = make_fifo(dir);
    std::thread writer([&fifo] {
        const int fd = ::open(fifo.c_str(), O_WRONLY);  // waits for the reader, as a shell's writer would
        if (fd < 0) return;
        const std::string text = "hello through a pipe";
        EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
        ::close(fd);
    });
    EXPECT_EQ(read_whole_file(fifo, kAnyFileSize, PipeInput::accept), "hello through a pipe");
    writer.join();

    std::thread long_writer([&fifo] {
        const int fd = ::open(fifo.c_str(), O_WRONLY);
        if (fd < 0) return;
        const std::string text(100, 'x');
        (void)::write(fd, text.data(), text.size());  // the reader may stop early
        ::close(fd);
    });
    EXPECT_THROW(read_whole_file(fifo, 10, PipeInput::accept), Error);
    long_writer.join();
}

}  // namespace
}  // namespace dendro
