// AtomicFileWriter: the target appears whole or not at all, and a write sweeps away the temporary files that
// killed writers of the same target left beside it, never those of a live writer or of another target.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "format/atomic_file.h"
#include "exited_process.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::temp_file_name;

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

void write_atomically(const std::string& path, const std::string& text) {
    AtomicFileWriter writer(path);
    writer.write(bytes_of(text));
    writer.commit();
}

TEST(AtomicFileTest, ReplacesTheTargetAndLeavesNoTemporaryFile) {
    const test::TempDir dir;
    const std::string target = dir.file("out.bin");
    write_atomically(target, "first");
    write_atomically(target, "second");
    EXPECT_EQ(test::read_file(target), bytes_of("second"));
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.bin"});
    {
        AtomicFileWriter abandoned(target);
        abandoned.write(bytes_of("never committed"));
    }
    EXPECT_EQ(test::read_file(target), bytes_of("second"));
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFileTest, AWriteRemovesOnlyTheStaleTemporaryFilesOfItsTarget) {
    const test::TempDir dir;
    const pid_t exited = test::exited_process_id();
    const std::string stale = temp_file_name("out.bin", exited);
    const std::string live = temp_file_name("out.bin", ::getpid());
    const std::string other_target = temp_file_name("other.bin", exited);
    const std::string not_a_temp_name = "out.bin.tmp-" + std::to_string(exited) + "-0123";  // too few hex digits
    const std::string prefix_of_target = temp_file_name("out", exited);
    for (const std::string& name : {stale, live, other_target, not_a_temp_name, prefix_of_target}) {
        test::write_file(dir.file(name), bytes_of("partial"));
    }

    write_atomically(dir.file("out.bin"), "done");
    std::vector<std::string> expected = {"out.bin", live, other_target, not_a_temp_name, prefix_of_target};
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(dir.entries(), expected);
}

}  // namespace
}  // namespace dendro
