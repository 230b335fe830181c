// Hostile and broken GGUF files: each must be rejected with a dendro::Error that says what is wrong and where,
// never a crash, hang or huge allocation.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "common/error.h"
#include "format/gguf.h"
#include "gguf_bytes.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::GgufBytes;
using test::TempDir;

constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ8_0 = 8;
constexpr uint32_t kTypeU32 = static_cast<uint32_t>(GgufType::UINT32);
constexpr uint32_t kTypeString = static_cast<uint32_t>(GgufType::STRING);
constexpr uint32_t kTypeArray = static_cast<uint32_t>(GgufType::ARRAY);
constexpr uint64_t kHuge = uint64_t{1} << 62;

// A small valid file: three keys (string, u32 array, f32), a Q8_0 tensor (34 bytes, padded to 64) and an F32
// tensor of 8 elements that ends exactly at the end of the file, so that every truncation loses something.
constexpr size_t kSmallFileDataBytes = 64 + 32;  // the padded Q8_0 block and the 8 floats
GgufBytes small_valid_file() {
    GgufBytes b;
    b.header(2, 3);
    b.kv_string("general.architecture", "mamba");
    b.str("mamba.list").u32(kTypeArray).u32(kTypeU32).u64(2).u32(7).u32(9);
    b.str("mamba.eps").u32(static_cast<uint32_t>(GgufType::FLOAT32)).f32(1e-5f);
    b.tensor_info("q", {32, 1}, kQ8_0, 0);
    b.tensor_info("w", {8}, kF32, 64);
    b.pad_to(kGgufDefaultAlignment);
    for (int i = 0; i < 34; ++i) b.u8(static_cast<uint8_t>(i));
    b.pad_to(kGgufDefaultAlignment);
    for (int i = 0; i < 8; ++i) b.f32(static_cast<float>(i));
    return b;
}

class GgufMalformed : public ::testing::Test {
protected:
    std::string write(const std::vector<uint8_t>& bytes, const std::string& name = "bad.gguf") {
        const std::string path = dir_.file(name);
        test::write_file(path, bytes);
        return path;
    }

    // Opening must fail with a dendro::Error containing the path and every fragment.
    void expect_rejected(const GgufBytes& bytes, std::initializer_list<const char*> fragments) {
        const std::string path = write(bytes.bytes());
        try {
            GgufFile::open(path);
            ADD_FAILURE() << "expected an error";
        } catch (const Error& e) {
            const std::string message = e.what();
            EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
            for (const char* fragment : fragments) EXPECT_NE(message.find(fragment), std::string::npos) << message;
        }
    }

    TempDir dir_;
};

TEST_F(GgufMalformed, TheBaseFileIsValid) {
    const auto file = GgufFile::open(write(small_valid_file().bytes()));
    EXPECT_EQ(file->get_string("general.architecture"), "mamba");
    EXPECT_EQ(file->get_int_array("mamba.list"), (std::vector<int64_t>{7, 9}));
    ASSERT_EQ(file->tensors().size(), 2u);
    EXPECT_EQ(file->tensors()[1].nbytes, 32u);
    EXPECT_EQ(file->tensors()[1].data + 32, file->bytes().data() + file->bytes().size());
}

TEST_F(GgufMalformed, EveryTruncationIsAnError) {
    const std::vector<uint8_t> full = small_valid_file().bytes();
    for (size_t length = 0; length < full.size(); ++length) {
        const std::string path = write(std::vector<uint8_t>(full.begin(), full.begin() + length));
        EXPECT_THROW(GgufFile::open(path), Error) << "truncated to " << length << " of " << full.size();
    }
}

TEST_F(GgufMalformed, EverySingleByteCorruptionOpensOrFailsCleanly) {
    // Not every corruption is detectable (a changed name byte is still a valid file), but none may crash.
    // Only the metadata is corrupted: tensor data bytes are never interpreted by the reader.
    const std::vector<uint8_t> full = small_valid_file().bytes();
    const size_t metadata_bytes = full.size() - kSmallFileDataBytes;
    size_t rejected = 0;
    for (size_t i = 0; i < metadata_bytes; ++i) {
        for (const uint8_t replacement : {uint8_t{0xff}, uint8_t{0x80}, uint8_t(full[i] + 1)}) {
            std::vector<uint8_t> corrupt = full;
            corrupt[i] = replacement;
            const std::string path = write(corrupt);
            try {
                GgufFile::open(path);
            } catch (const Error&) {
                ++rejected;
            }
        }
    }
    EXPECT_GT(rejected, metadata_bytes);  // most of the metadata is checked
}

TEST_F(GgufMalformed, NotAGgufFile) {
    GgufBytes text;
    for (const char c : std::string("hello, world\n")) text.u8(static_cast<uint8_t>(c));
    expect_rejected(text, {"not a GGUF file", "'hell'", "at offset 0"});
    expect_rejected(GgufBytes(), {"file ends", "magic"});
    GgufBytes binary;
    binary.u32(0x00010203).u64(0);
    expect_rejected(binary, {"not a GGUF file", "magic is '\?\?\?\?'"});
}

TEST_F(GgufMalformed, UnsupportedVersions) {
    for (const uint32_t version : {1u, 2u, 4u, 0x03000000u}) {
        GgufBytes b;
        b.header(0, 0, version);
        expect_rejected(b, {"unsupported GGUF version", std::to_string(version).c_str(), "only version 3"});
    }
}

TEST_F(GgufMalformed, HugeCountsAreRejectedBeforeAllocating) {
    GgufBytes tensors;
    tensors.header(kHuge, 0);
    expect_rejected(tensors, {"tensor count", std::to_string(kHuge).c_str()});
    GgufBytes kvs;
    kvs.header(0, std::numeric_limits<uint64_t>::max());
    expect_rejected(kvs, {"key/value count"});
    GgufBytes plausible_but_short;
    plausible_but_short.header(0, 3).kv_u32("a", 1);
    expect_rejected(plausible_but_short, {"key/value count is 3"});
}

TEST_F(GgufMalformed, HugeStringLengths) {
    GgufBytes key;
    key.header(0, 1).u64(kHuge).zeros(16);
    expect_rejected(key, {"key has length", "key #0"});
    GgufBytes value;
    value.header(0, 1).str("k").u32(kTypeString).u64(std::numeric_limits<uint64_t>::max());
    expect_rejected(value, {"string value has length", "key 'k'"});
    GgufBytes name;
    name.header(1, 0).u64(kHuge).zeros(32);
    expect_rejected(name, {"tensor name has length", "tensor #0"});
}

TEST_F(GgufMalformed, HugeArrays) {
    GgufBytes numbers;
    numbers.header(0, 1).str("a").u32(kTypeArray).u32(kTypeU32).u64(kHuge).u32(1);
    expect_rejected(numbers, {"array length", "key 'a'"});
    GgufBytes strings;
    strings.header(0, 1).str("a").u32(kTypeArray).u32(kTypeString).u64(kHuge).str("x");
    expect_rejected(strings, {"array length", "key 'a'"});
    GgufBytes long_element;
    long_element.header(0, 1).str("a").u32(kTypeArray).u32(kTypeString).u64(1).u64(kHuge);
    expect_rejected(long_element, {"array string has length", "key 'a'"});
    // 2^40 strings claimed in a 1 KB file: refused by the bytes left, before anything is allocated.
    constexpr uint64_t kTerastrings = uint64_t{1} << 40;
    constexpr size_t kKilobyte = 1024;
    GgufBytes kilobyte;
    kilobyte.header(0, 1).str("a").u32(kTypeArray).u32(kTypeString).u64(kTerastrings);
    kilobyte.zeros(kKilobyte - kilobyte.size());
    expect_rejected(kilobyte, {"array length is 1099511627776", "can hold at most", "key 'a'"});
}

TEST_F(GgufMalformed, ValueTypes) {
    GgufBytes unknown;
    unknown.header(0, 1).str("k").u32(13).u32(0);
    expect_rejected(unknown, {"unknown value type 13", "key 'k'"});
    GgufBytes unknown_element;
    unknown_element.header(0, 1).str("k").u32(kTypeArray).u32(0xffffffff).u64(0);
    expect_rejected(unknown_element, {"unknown value type 4294967295", "key 'k'"});
    GgufBytes nested;
    nested.header(0, 1).str("k").u32(kTypeArray).u32(kTypeArray).u64(1).u32(kTypeU32).u64(0);
    expect_rejected(nested, {"nested arrays are not supported", "key 'k'"});
}

TEST_F(GgufMalformed, Keys) {
    GgufBytes duplicate;
    duplicate.header(0, 2).kv_u32("dup", 1).kv_u32("dup", 2);
    expect_rejected(duplicate, {"duplicate key", "key 'dup'"});
    GgufBytes empty;
    empty.header(0, 1).kv_u32("", 1);
    expect_rejected(empty, {"empty key"});
}

TEST_F(GgufMalformed, Alignment) {
    GgufBytes wrong_type;
    wrong_type.header(0, 1).str("general.alignment").u32(static_cast<uint32_t>(GgufType::UINT64)).u64(32);
    expect_rejected(wrong_type, {"general.alignment", "u32", "u64"});
    GgufBytes not_power_of_two;
    not_power_of_two.header(0, 1).kv_u32("general.alignment", 48);
    expect_rejected(not_power_of_two, {"general.alignment", "48", "power of two"});
    GgufBytes zero;
    zero.header(0, 1).kv_u32("general.alignment", 0);
    expect_rejected(zero, {"general.alignment", "power of two"});
}

TEST_F(GgufMalformed, TensorShapes) {
    GgufBytes five_dims;
    five_dims.header(1, 0).tensor_info("t", {1, 1, 1, 1, 1}, kF32, 0);
    expect_rejected(five_dims, {"5 dimensions", "tensor 't'"});
    GgufBytes negative;
    negative.header(1, 0).tensor_info("t", {4, -2}, kF32, 0);
    expect_rejected(negative, {"dimension 1 is negative", "tensor 't'"});
    GgufBytes overflow;
    overflow.header(1, 0).tensor_info("t", {int64_t{1} << 32, int64_t{1} << 32}, kF32, 0);
    expect_rejected(overflow, {"overflows", "tensor 't'"});
    GgufBytes byte_overflow;  // the element count fits int64 but 4 bytes each does not fit 64 bits
    byte_overflow.header(1, 0).tensor_info("t", {int64_t{1} << 62}, kF32, 0);
    expect_rejected(byte_overflow, {"overflows", "tensor 't'"});
    GgufBytes partial_block;
    partial_block.header(1, 0).tensor_info("t", {33}, kQ8_0, 0);
    expect_rejected(partial_block, {"not a multiple of the q8_0 block size 32", "tensor 't'"});
}

TEST_F(GgufMalformed, TensorNamesAndTypes) {
    GgufBytes long_name;
    long_name.header(1, 0).tensor_info(std::string(64, 'x'), {1}, kF32, 0);
    expect_rejected(long_name, {"64 bytes", "63"});
    GgufBytes duplicate;
    duplicate.header(2, 0).tensor_info("t", {8}, kF32, 0).tensor_info("t", {8}, kF32, 32);
    expect_rejected(duplicate, {"duplicate tensor name", "tensor 't'"});
    for (const uint32_t removed : {4u, 31u, 43u, 1000u}) {
        GgufBytes unknown;
        unknown.header(1, 0).tensor_info("t", {32}, removed, 0);
        expect_rejected(unknown, {"unknown ggml type id", std::to_string(removed).c_str(), "tensor 't'"});
    }
    GgufBytes unsupported;
    unsupported.header(1, 0).tensor_info("blk.0.ssm_x.weight", {256}, 23 /* iq4_xs */, 0).pad_to(32).zeros(136);
    expect_rejected(unsupported, {"iq4_xs", "not supported", "tensor 'blk.0.ssm_x.weight'"});
}

TEST_F(GgufMalformed, TensorOffsets) {
    GgufBytes first_not_zero;
    first_not_zero.header(1, 0).tensor_info("t", {8}, kF32, 32).pad_to(32).zeros(64);
    expect_rejected(first_not_zero, {"offset is 32, expected 0", "tensor 't'"});
    GgufBytes misaligned;
    misaligned.header(2, 0).tensor_info("a", {3}, kF32, 0).tensor_info("b", {8}, kF32, 12).pad_to(32).zeros(64);
    expect_rejected(misaligned, {"offset is 12, expected 32", "tensor 'b'"});
    GgufBytes gap;
    gap.header(2, 0).tensor_info("a", {8}, kF32, 0).tensor_info("b", {8}, kF32, 64).pad_to(32).zeros(128);
    expect_rejected(gap, {"offset is 64, expected 32", "tensor 'b'"});
    GgufBytes overlapping;
    overlapping.header(2, 0).tensor_info("a", {8}, kF32, 0).tensor_info("b", {8}, kF32, 0).pad_to(32).zeros(64);
    expect_rejected(overlapping, {"offset is 0, expected 32", "tensor 'b'"});
}

TEST_F(GgufMalformed, DataBeyondTheEndOfTheFile) {
    GgufBytes big;
    big.header(1, 0).tensor_info("t", {1000000}, kF32, 0).pad_to(32).zeros(64);
    expect_rejected(big, {"extends beyond the end of the file", "tensor 't'", "4000000 bytes"});
    GgufBytes no_data_section;
    no_data_section.header(1, 0).tensor_info("t", {0}, kF32, 0);
    expect_rejected(no_data_section, {"file ends before the tensor data section"});
}

TEST_F(GgufMalformed, ErrorsSayWhere) {
    GgufBytes b;
    b.header(0, 2).kv_u32("ok", 1).str("k").u32(99);
    const std::string path = write(b.bytes());
    try {
        GgufFile::open(path);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        // header 24 bytes + "ok" kv (8 + 2 + 4 + 4) + "k" (8 + 1): the type sits at offset 51.
        EXPECT_EQ(std::string(e.what()), path + ": unknown value type 99 (key 'k', at offset 51)");
    }
}

// What ggml accepts, Dendro's reader accepts too.
TEST_F(GgufMalformed, GgmlEdgeCasesThatAreValid) {
    GgufBytes header_only;  // no tensors: ggml does not require padding after the header
    header_only.header(0, 1).kv_u32("a", 1);
    EXPECT_EQ(GgufFile::open(write(header_only.bytes()))->get_uint("a"), 1u);

    GgufBytes empty_and_scalar;  // a zero-sized tensor and a 0-dimensional (scalar) tensor
    empty_and_scalar.header(2, 0).tensor_info("empty", {0, 5}, kF32, 0).tensor_info("scalar", {}, kF32, 0);
    empty_and_scalar.pad_to(32).f32(2.5f);
    const auto file = GgufFile::open(write(empty_and_scalar.bytes(), "edge.gguf"));
    EXPECT_EQ(file->tensors()[0].nbytes, 0u);
    EXPECT_EQ(file->tensors()[1].n_elements(), 1);
    EXPECT_EQ(file->tensors()[1].nbytes, 4u);

    GgufBytes odd_bool;  // ggml reads any non-zero byte as true
    odd_bool.header(0, 1).str("b").u32(static_cast<uint32_t>(GgufType::BOOL)).u8(7);
    EXPECT_TRUE(GgufFile::open(write(odd_bool.bytes(), "bool.gguf"))->get_bool("b"));
}

}  // namespace
}  // namespace dendro
