// Safetensors reader: valid files and sharded checkpoints view the right bytes; every kind of corrupt header,
// truncated data or inconsistent index is refused with a message naming the file and the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "safetensors.h"
#include "safetensors_builder.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::SafetensorsBuilder;

// Runs `body`, expecting a dendro::Error whose message contains every one of `parts`.
template <typename Body>
void expect_error(Body body, const std::vector<std::string>& parts) {
    try {
        body();
        ADD_FAILURE() << "no error thrown; expected one mentioning '" << parts.front() << "'";
    } catch (const Error& e) {
        for (const std::string& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
}

SafetensorsBuilder two_tensors() {
    SafetensorsBuilder b;
    b.add_f32("a", {2, 3}, {1, 2, 3, 4, 5, 6});
    const uint16_t halves[2] = {0x3c00, 0xc000};  // f16 1.0, -2.0
    b.add("b", "F16", {2}, std::span(reinterpret_cast<const uint8_t*>(halves), sizeof(halves)));
    return b;
}

std::string write(const test::TempDir& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = dir.file(name);
    test::write_file(path, bytes);
    return path;
}

TEST(Safetensors, ReadsTensorsInPlace) {
    const test::TempDir dir;
    SafetensorsBuilder b = two_tensors();
    b.header()["__metadata__"] = {{"format", "pt"}};
    const auto file = SafetensorsFile::open(write(dir, "m.safetensors", b.bytes()));
    ASSERT_EQ(file->tensors().size(), 2u);
    const SafetensorsTensor* a = file->find("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->dtype, "F32");
    EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a->n_elements(), 6);
    EXPECT_EQ(a->shape_string(), "[2, 3]");
    float last = 0;
    std::memcpy(&last, a->data.data() + 5 * sizeof(float), sizeof(float));
    EXPECT_EQ(last, 6.0f);
    const SafetensorsTensor* half = file->find("b");
    ASSERT_NE(half, nullptr);
    EXPECT_EQ(half->data.size(), 4u);
    EXPECT_EQ(file->find("__metadata__"), nullptr);
}

TEST(Safetensors, AcceptsEmptyTensorsAndScalars) {
    const test::TempDir dir;
    SafetensorsBuilder b;
    b.add("empty", "F32", {0, 4}, {});
    b.add_f32("scalar", {}, {3.5f});
    const auto file = SafetensorsFile::open(write(dir, "m.safetensors", b.bytes()));
    EXPECT_EQ(file->find("empty")->n_elements(), 0);
    EXPECT_EQ(file->find("scalar")->n_elements(), 1);
}

TEST(Safetensors, RefusesTooShortFile) {
    const test::TempDir dir;
    const std::string path = write(dir, "m.safetensors", {1, 2, 3});
    expect_error([&] { SafetensorsFile::open(path); }, {path, "too short"});
}

TEST(Safetensors, RefusesHeaderLengthPastEndOfFile) {
    const test::TempDir dir;
    std::vector<uint8_t> bytes = two_tensors().bytes();
    bytes[0] += 100;  // header length now runs into and past the data
    bytes.resize(bytes.size() - 20);
    const std::string path = write(dir, "m.safetensors", bytes);
    expect_error([&] { SafetensorsFile::open(path); }, {path, "header length"});
}

TEST(Safetensors, RefusesHugeHeaderLength) {
    const test::TempDir dir;
    std::vector<uint8_t> bytes = two_tensors().bytes();
    const uint64_t huge = kSafetensorsMaxHeaderBytes + 1;
    std::memcpy(bytes.data(), &huge, sizeof(huge));
    const std::string path = write(dir, "m.safetensors", bytes);
    expect_error([&] { SafetensorsFile::open(path); }, {path, "exceeds"});
}

TEST(Safetensors, RefusesHeaderThatIsNotJson) {
    const test::TempDir dir;
    std::vector<uint8_t> bytes = two_tensors().bytes();
    bytes[8 + 5] = '#';
    const std::string path = write(dir, "m.safetensors", bytes);
    expect_error([&] { SafetensorsFile::open(path); }, {path, "not valid JSON"});
}

TEST(Safetensors, RefusesHeaderThatIsNotAnObject) {
    const test::TempDir dir;
    const std::string header = "[1, 2]";
    std::vector<uint8_t> bytes(8, 0);
    bytes[0] = static_cast<uint8_t>(header.size());
    bytes.insert(bytes.end(), header.begin(), header.end());
    const std::string path = write(dir, "m.safetensors", bytes);
    expect_error([&] { SafetensorsFile::open(path); }, {path, "not a JSON object"});
}

TEST(Safetensors, RefusesUnknownDtype) {
    const test::TempDir dir;
    SafetensorsBuilder b = two_tensors();
    b.header()["a"]["dtype"] = "F7";
    const std::string path = write(dir, "m.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(path); }, {path, "'a'", "unknown dtype 'F7'"});
}

TEST(Safetensors, RefusesShapeThatDisagreesWithOffsets) {
    const test::TempDir dir;
    SafetensorsBuilder b = two_tensors();
    b.header()["a"]["shape"] = {3, 3};
    const std::string path = write(dir, "m.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(path); }, {path, "'a'", "need 36 bytes", "span 24"});
}

TEST(Safetensors, RefusesNegativeOrOverflowingShape) {
    const test::TempDir dir;
    SafetensorsBuilder b = two_tensors();
    b.header()["a"]["shape"] = {-2, 3};
    const std::string negative = write(dir, "neg.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(negative); }, {negative, "non-negative"});
    b.header()["a"]["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40};
    const std::string overflow = write(dir, "big.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(overflow); }, {overflow, "overflows"});
}

TEST(Safetensors, RefusesTruncatedData) {
    const test::TempDir dir;
    std::vector<uint8_t> bytes = two_tensors().bytes();
    bytes.resize(bytes.size() - 3);
    const std::string path = write(dir, "m.safetensors", bytes);
    expect_error([&] { SafetensorsFile::open(path); }, {path, "'b'", "truncated"});
}

TEST(Safetensors, RefusesOverlappingTensors) {
    const test::TempDir dir;
    SafetensorsBuilder b;
    b.add_f32("a", {2}, {1, 2});
    b.add_f32("b", {2}, {3, 4});
    b.header()["b"]["data_offsets"] = {4, 12};
    b.data().resize(12);
    const std::string path = write(dir, "m.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(path); }, {path, "overlaps"});
}

TEST(Safetensors, RefusesHolesAndTrailingBytes) {
    const test::TempDir dir;
    SafetensorsBuilder hole;
    hole.add_f32("a", {2}, {1, 2});
    hole.add_f32("b", {1}, {3});
    hole.header()["a"]["data_offsets"] = {0, 4};
    hole.header()["a"]["shape"] = {1};
    const std::string hole_path = write(dir, "hole.safetensors", hole.bytes());
    expect_error([&] { SafetensorsFile::open(hole_path); }, {hole_path, "unused bytes before tensor 'b'"});

    SafetensorsBuilder trailing = two_tensors();
    trailing.data().push_back(0);
    const std::string trailing_path = write(dir, "trailing.safetensors", trailing.bytes());
    expect_error([&] { SafetensorsFile::open(trailing_path); }, {trailing_path, "belong to no tensor"});
}

TEST(Safetensors, RefusesMalformedEntries) {
    const test::TempDir dir;
    SafetensorsBuilder b = two_tensors();
    b.header()["a"].erase("dtype");
    const std::string no_dtype = write(dir, "a.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(no_dtype); }, {no_dtype, "'dtype'"});
    b = two_tensors();
    b.header()["a"]["data_offsets"] = {0};
    const std::string bad_offsets = write(dir, "b.safetensors", b.bytes());
    expect_error([&] { SafetensorsFile::open(bad_offsets); }, {bad_offsets, "data_offsets"});
}

// A sharded checkpoint: two shard files and an index mapping each tensor to its shard.
struct ShardedCheckpoint {
    test::TempDir dir;
    nlohmann::json index = {{"metadata", {{"total_size", 40}}},
                            {"weight_map", {{"a", "model-00001-of-00002.safetensors"},
                                            {"b", "model-00002-of-00002.safetensors"}}}};
    ShardedCheckpoint() {
        SafetensorsBuilder first, second;
        first.add_f32("a", {2}, {1, 2});
        second.add_f32("b", {3}, {3, 4, 5});
        write(dir, "model-00001-of-00002.safetensors", first.bytes());
        write(dir, "model-00002-of-00002.safetensors", second.bytes());
    }
    void write_index() const {
        std::ofstream(dir.file(SafetensorsCheckpoint::kIndexFileName)) << index.dump();
    }
};

TEST(SafetensorsCheckpoint, OpensShardsThroughTheIndex) {
    ShardedCheckpoint c;
    c.write_index();
    const auto checkpoint = SafetensorsCheckpoint::open(c.dir.path());
    EXPECT_EQ(checkpoint->files().size(), 2u);
    ASSERT_NE(checkpoint->find("b"), nullptr);
    EXPECT_EQ(checkpoint->find("b")->n_elements(), 3);
    EXPECT_NE(checkpoint->find("b")->file.find("model-00002-of-00002"), std::string::npos);
    ASSERT_EQ(checkpoint->tensors().size(), 2u);
    EXPECT_EQ(checkpoint->tensors()[0]->name, "a");
}

TEST(SafetensorsCheckpoint, PrefersTheSingleFile) {
    ShardedCheckpoint c;
    c.write_index();
    SafetensorsBuilder single;
    single.add_f32("only", {1}, {7});
    write(c.dir, SafetensorsCheckpoint::kSingleFileName, single.bytes());
    const auto checkpoint = SafetensorsCheckpoint::open(c.dir.path());
    EXPECT_NE(checkpoint->find("only"), nullptr);
    EXPECT_EQ(checkpoint->find("a"), nullptr);
}

TEST(SafetensorsCheckpoint, RefusesDirectoryWithoutWeights) {
    const test::TempDir dir;
    expect_error([&] { SafetensorsCheckpoint::open(dir.path()); }, {dir.path(), "model.safetensors"});
}

TEST(SafetensorsCheckpoint, RefusesMissingShard) {
    ShardedCheckpoint c;
    c.index["weight_map"]["b"] = "model-00003-of-00002.safetensors";
    c.write_index();
    expect_error([&] { SafetensorsCheckpoint::open(c.dir.path()); }, {"model-00003-of-00002.safetensors"});
}

TEST(SafetensorsCheckpoint, RefusesIndexThatDisagreesWithShards) {
    ShardedCheckpoint missing;
    missing.index["weight_map"]["c"] = "model-00002-of-00002.safetensors";
    missing.write_index();
    expect_error([&] { SafetensorsCheckpoint::open(missing.dir.path()); }, {"has no tensor 'c'"});

    ShardedCheckpoint unlisted;
    unlisted.index["weight_map"].erase("b");
    unlisted.index["weight_map"]["a"] = "model-00001-of-00002.safetensors";
    unlisted.write_index();
    SafetensorsBuilder both;
    both.add_f32("a", {2}, {1, 2});
    both.add_f32("b", {1}, {3});
    write(unlisted.dir, "model-00001-of-00002.safetensors", both.bytes());
    expect_error([&] { SafetensorsCheckpoint::open(unlisted.dir.path()); }, {"'b' is not in"});
}

TEST(SafetensorsCheckpoint, RefusesShardPathsOutsideTheDirectory) {
    ShardedCheckpoint c;
    c.index["weight_map"]["b"] = "../elsewhere.safetensors";
    c.write_index();
    expect_error([&] { SafetensorsCheckpoint::open(c.dir.path()); }, {"../elsewhere.safetensors", "not a file in"});
}

TEST(SafetensorsCheckpoint, RefusesMalformedIndex) {
    ShardedCheckpoint c;
    std::ofstream(c.dir.file(SafetensorsCheckpoint::kIndexFileName)) << "{\"weight_map\": ";
    expect_error([&] { SafetensorsCheckpoint::open(c.dir.path()); }, {"model.safetensors.index.json", "JSON"});
    std::ofstream(c.dir.file(SafetensorsCheckpoint::kIndexFileName)) << "{\"metadata\": {}}";
    expect_error([&] { SafetensorsCheckpoint::open(c.dir.path()); }, {"weight_map"});
}

}  // namespace
}  // namespace dendro
