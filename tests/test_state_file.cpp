// State files: exact round trip, and a clear dendro::Error (never a crash or a half-loaded state) for a file
// of another model, another version, every truncation, every corrupted byte, trailing bytes and absurd sizes.
// Also the model fingerprint it is keyed on, and its memo.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iterator>

#include "common/error.h"
#include "format/gguf.h"
#include "model/model_fingerprint.h"
#include "cache/state_file.h"
#include "state_snapshot_fixture.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::random_snapshot;
using test::random_tokens;
using test::TempDir;

const ModelFingerprint kModel{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
const ModelFingerprint kOtherModel{0x0123456789abcdefULL, 0xfedcba9876543211ULL};

// The message of the dendro::Error reading `path` throws ("" when it does not throw).
std::string read_error(const std::string& path) {
    try {
        read_state_file(path, kModel);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

class StateFileTest : public ::testing::Test {
protected:
    TempDir dir;
    ModelHparams hp = test::tiny_state_hparams();
    StateSnapshot snapshot = random_snapshot(hp, random_tokens(3, hp.n_vocab, 7), 7);
    std::string path = dir.file("prompt.dstate");
};

TEST_F(StateFileTest, RoundTripIsBitExact) {
    const uint64_t written = write_state_file(path, kModel, snapshot);
    EXPECT_EQ(written, std::filesystem::file_size(path));
    EXPECT_EQ(written, state_file_size(snapshot));
    const StateSnapshot loaded = read_state_file(path, kModel);
    EXPECT_TRUE(test::same_bits(loaded, snapshot));
    EXPECT_TRUE(loaded.fits(hp));

    const StateFileHeader h = read_state_file_header(path);
    EXPECT_EQ(h.version, kStateFileVersion);
    EXPECT_EQ(h.model, kModel);
    EXPECT_EQ(h.shape, StateShape::of(hp));
    EXPECT_EQ(h.n_vocab, hp.n_vocab);
    EXPECT_EQ(h.n_tokens, 3);
}

TEST_F(StateFileTest, HeaderLayoutIsTheDocumentedOne) {
    write_state_file(path, kModel, snapshot);
    const std::vector<uint8_t> bytes = test::read_file(path);
    ASSERT_GE(bytes.size(), kStateFileHeaderBytes);
    EXPECT_EQ(std::memcmp(bytes.data(), "DNDRSTAT", 8), 0);
    uint32_t version = 0;
    std::memcpy(&version, bytes.data() + 8, sizeof version);
    EXPECT_EQ(version, 2u);
    uint32_t arch = 0;
    std::memcpy(&arch, bytes.data() + 32, sizeof arch);
    EXPECT_EQ(arch, 1u);  // mamba
    int64_t conv_channels = 0;
    std::memcpy(&conv_channels, bytes.data() + 56, sizeof conv_channels);
    EXPECT_EQ(conv_channels, hp.d_inner);
    int64_t n_tokens = 0;
    std::memcpy(&n_tokens, bytes.data() + 88, sizeof n_tokens);
    EXPECT_EQ(n_tokens, 3);
    int32_t first_token = 0;
    std::memcpy(&first_token, bytes.data() + kStateFileHeaderBytes, sizeof first_token);
    EXPECT_EQ(first_token, snapshot.tokens[0]);
}

TEST_F(StateFileTest, AnotherModelIsRefusedByName) {
    write_state_file(path, kOtherModel, snapshot);
    const std::string message = read_error(path);
    EXPECT_NE(message.find("another model"), std::string::npos) << message;
    EXPECT_NE(message.find(path), std::string::npos) << message;
}

TEST_F(StateFileTest, AnotherVersionIsRefusedByName) {
    write_state_file(path, kModel, snapshot);
    std::vector<uint8_t> bytes = test::read_file(path);
    const uint32_t future = kStateFileVersion + 1;
    std::memcpy(bytes.data() + sizeof kStateFileMagic, &future, sizeof future);
    test::write_file(path, bytes);
    const std::string message = read_error(path);
    EXPECT_NE(message.find("version 3"), std::string::npos) << message;
    EXPECT_THROW(read_state_file_header(path), Error);
}

TEST_F(StateFileTest, EveryTruncationIsAnError) {
    const std::string good = dir.file("good.dstate");
    write_state_file(good, kModel, snapshot);
    const std::vector<uint8_t> bytes = test::read_file(good);
    for (size_t length = 0; length < bytes.size(); ++length) {
        test::write_file(path, std::span(bytes).first(length));
        EXPECT_NE(read_error(path), "") << "truncated to " << length << " bytes";
    }
}

TEST_F(StateFileTest, EveryCorruptedByteIsAnError) {
    const std::string good = dir.file("good.dstate");
    write_state_file(good, kModel, snapshot);
    const std::vector<uint8_t> bytes = test::read_file(good);
    for (size_t i = 0; i < bytes.size(); ++i) {
        std::vector<uint8_t> corrupt = bytes;
        corrupt[i] ^= 0x10;
        test::write_file(path, corrupt);
        EXPECT_NE(read_error(path), "") << "byte " << i << " flipped";
    }
}

TEST_F(StateFileTest, TrailingBytesAreAnError) {
    write_state_file(path, kModel, snapshot);
    std::vector<uint8_t> bytes = test::read_file(path);
    bytes.push_back(0);
    test::write_file(path, bytes);
    EXPECT_NE(read_error(path).find("trailing"), std::string::npos);
}

TEST_F(StateFileTest, AbsurdSizesAreRefusedBeforeAllocating) {
    write_state_file(path, kModel, snapshot);
    std::vector<uint8_t> bytes = test::read_file(path);
    constexpr size_t kDInnerOffset = 64;
    for (const int64_t d_inner : {int64_t{1} << 40, int64_t{1} << 62, int64_t{-5}}) {
        std::memcpy(bytes.data() + kDInnerOffset, &d_inner, sizeof d_inner);
        test::write_file(path, bytes);
        EXPECT_NE(read_error(path), "") << "d_inner " << d_inner;
    }
}

// A Mamba-2 state: the conv window is wider than the SSM's channels, and the architecture is recorded.
TEST_F(StateFileTest, Mamba2ShapesRoundTrip) {
    ModelHparams m2 = test::tiny_mamba2_state_hparams();
    const StateSnapshot s2 = random_snapshot(m2, random_tokens(5, m2.n_vocab, 3), 3);
    ASSERT_NE(s2.state.shape.conv_channels, s2.state.shape.d_inner);
    write_state_file(path, kModel, s2);
    const StateSnapshot loaded = read_state_file(path, kModel);
    EXPECT_TRUE(test::same_bits(loaded, s2));
    EXPECT_TRUE(loaded.fits(m2));
    EXPECT_FALSE(loaded.fits(hp));
    EXPECT_EQ(read_state_file_header(path).shape.arch, Architecture::Mamba2);
    // An unknown architecture number is refused (the checksum is not what stops it: it is checked later).
    std::vector<uint8_t> bytes = test::read_file(path);
    bytes[32] = 9;
    test::write_file(path, bytes);
    EXPECT_NE(read_error(path).find("unknown architecture 9"), std::string::npos) << read_error(path);
    // The reserved word must be 0: a later version may give it a meaning.
    bytes[32] = 2;
    bytes[36] = 1;
    test::write_file(path, bytes);
    EXPECT_NE(read_error(path).find("reserved header word is 1"), std::string::npos) << read_error(path);
}

// A header whose conv width no model has (Mamba-1's is d_inner; Mamba-2's adds B and C for whole groups) is
// refused when read, before its body is sized: no model could restore it.
TEST_F(StateFileTest, ShapesNoModelHasAreRefused) {
    constexpr size_t kConvChannelsOffset = 56;
    const auto refuse_conv_channels = [&](const StateSnapshot& s, int64_t conv_channels) {
        write_state_file(path, kModel, s);
        std::vector<uint8_t> bytes = test::read_file(path);
        std::memcpy(bytes.data() + kConvChannelsOffset, &conv_channels, sizeof conv_channels);
        test::write_file(path, bytes);
        const std::string error = read_error(path);
        EXPECT_NE(error.find("invalid sizes ("), std::string::npos) << "conv_channels " << conv_channels << ": " << error;
    };
    const StateShape& m1 = snapshot.state.shape;
    refuse_conv_channels(snapshot, m1.d_inner + 2 * m1.d_state);
    const ModelHparams m2 = test::tiny_mamba2_state_hparams();
    const StateSnapshot s2 = random_snapshot(m2, random_tokens(5, m2.n_vocab, 3), 3);
    const StateShape& sh = s2.state.shape;
    for (const int64_t conv_channels : {sh.d_inner, sh.d_inner + sh.d_state, sh.d_inner + 2 * sh.d_state + 2, sh.d_inner - 2}) {
        refuse_conv_channels(s2, conv_channels);
    }

    StateShape possible = sh;
    EXPECT_TRUE(possible.is_possible());
    possible.conv_channels = sh.d_inner + 6 * sh.d_state;  // three groups
    EXPECT_TRUE(possible.is_possible());
    possible.d_state = INT64_MAX;  // 2 * d_state would overflow
    EXPECT_FALSE(possible.is_possible());
}

// Version 1 (Dendro before Mamba-2) had no architecture and no conv width: its files still load, as Mamba-1.
TEST_F(StateFileTest, Version1FilesStillLoad) {
    write_state_file(path, kModel, snapshot);
    const std::vector<uint8_t> v2 = test::read_file(path);
    // The version 1 header: magic, version 1, dtype, fingerprint, then n_layer, d_conv, d_inner, d_state,
    // n_vocab, n_tokens; the body unchanged; the checksum over all of it.
    std::vector<uint8_t> v1(v2.begin(), v2.begin() + 32);
    const uint32_t one = 1;
    std::memcpy(v1.data() + 8, &one, sizeof one);
    for (const size_t field : {40, 48, 64, 72, 80, 88}) v1.insert(v1.end(), v2.begin() + field, v2.begin() + field + 8);
    ASSERT_EQ(v1.size(), kStateFileV1HeaderBytes);
    v1.insert(v1.end(), v2.begin() + kStateFileHeaderBytes, v2.end() - kStateFileChecksumBytes);
    const uint64_t checksum = XXH3_64bits(v1.data(), v1.size());
    const auto* checksum_bytes = reinterpret_cast<const uint8_t*>(&checksum);
    v1.insert(v1.end(), checksum_bytes, checksum_bytes + sizeof checksum);
    test::write_file(path, v1);

    const StateFileHeader h = read_state_file_header(path);
    EXPECT_EQ(h.version, kStateFileVersion1);
    EXPECT_EQ(h.shape, StateShape::of(hp));
    const StateSnapshot loaded = read_state_file(path, kModel);
    EXPECT_TRUE(test::same_bits(loaded, snapshot));
    EXPECT_TRUE(loaded.fits(hp));
}

TEST_F(StateFileTest, NotAStateFileAndMissingFileAreErrors) {
    test::write_file(path, std::vector<uint8_t>(200, 'x'));
    EXPECT_NE(read_error(path).find("not a Dendro state file"), std::string::npos);
    EXPECT_NE(read_error(dir.file("missing.dstate")).find("cannot open"), std::string::npos);
    EXPECT_NE(read_error(dir.path()), "");  // a directory
    test::write_file(path, std::vector<uint8_t>{'T', 'o', ' ', 'b', 'e', '\n'});  // shorter than the magic
    EXPECT_NE(read_error(path).find("not a Dendro state file"), std::string::npos) << read_error(path);
}

// Which files the prompt cache may replace: those that start with the magic, whatever follows.
TEST_F(StateFileTest, StartsWithTheMagic) {
    std::vector<uint8_t> bytes(std::begin(kStateFileMagic), std::end(kStateFileMagic));
    test::write_file(path, bytes);  // a truncated state file is still ours
    EXPECT_TRUE(starts_with_state_file_magic(path));
    bytes.back() ^= 1;
    test::write_file(path, bytes);
    EXPECT_FALSE(starts_with_state_file_magic(path));
    bytes.pop_back();
    test::write_file(path, bytes);
    EXPECT_FALSE(starts_with_state_file_magic(path));
    EXPECT_FALSE(starts_with_state_file_magic(dir.file("missing")));
    EXPECT_FALSE(starts_with_state_file_magic(dir.path()));
}

TEST_F(StateFileTest, RewritingReplacesTheWholeFile) {
    write_state_file(path, kModel, random_snapshot(hp, random_tokens(40, hp.n_vocab, 1), 1));
    write_state_file(path, kModel, snapshot);
    EXPECT_TRUE(test::same_bits(read_state_file(path, kModel), snapshot));
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"prompt.dstate"}) << "temp file left behind";
}

TEST_F(StateFileTest, EmptySnapshotIsNotSaved) {
    StateSnapshot empty = snapshot;
    empty.tokens.clear();
    EXPECT_THROW(write_state_file(path, kModel, empty), Error);
    EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ModelFingerprint, HexRoundTripAndRejects) {
    EXPECT_EQ(kModel.hex(), "0123456789abcdeffedcba9876543210");
    EXPECT_EQ(ModelFingerprint::from_hex(kModel.hex()), kModel);
    EXPECT_FALSE(ModelFingerprint::from_hex("0123"));
    EXPECT_FALSE(ModelFingerprint::from_hex("0123456789ABCDEFfedcba9876543210"));
    EXPECT_FALSE(ModelFingerprint::from_hex("0123456789abcdeffedcba987654321g"));
}

TEST(ModelFingerprint, DependsOnEveryByteAndTheLength) {
    std::vector<uint8_t> bytes(1000);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 31);
    const ModelFingerprint base = fingerprint_bytes(bytes);
    EXPECT_EQ(fingerprint_bytes(bytes), base);
    for (size_t i : {size_t{0}, size_t{500}, size_t{999}}) {
        std::vector<uint8_t> changed = bytes;
        changed[i] ^= 1;
        EXPECT_NE(fingerprint_bytes(changed), base) << "byte " << i;
    }
    EXPECT_NE(fingerprint_bytes(std::span(bytes).first(999)), base);
    EXPECT_NE(fingerprint_bytes({}), base);
}

TEST(ModelFingerprint, EveryChunkOfALargeFileCounts) {
    std::vector<uint8_t> bytes(kFingerprintChunkBytes + 100, 7);
    const ModelFingerprint base = fingerprint_bytes(bytes);
    for (size_t i : {size_t{10}, kFingerprintChunkBytes - 1, kFingerprintChunkBytes, bytes.size() - 1}) {
        bytes[i] ^= 1;
        EXPECT_NE(fingerprint_bytes(bytes), base) << "byte " << i;
        bytes[i] ^= 1;
    }
    // Swapping two chunks' contents changes it too (the chunk digests are hashed in order).
    std::vector<uint8_t> two_chunks(2 * kFingerprintChunkBytes, 1);
    std::fill(two_chunks.begin(), two_chunks.begin() + kFingerprintChunkBytes, 2);
    const ModelFingerprint ordered = fingerprint_bytes(two_chunks);
    std::rotate(two_chunks.begin(), two_chunks.begin() + kFingerprintChunkBytes, two_chunks.end());
    EXPECT_NE(fingerprint_bytes(two_chunks), ordered);
}

// A small GGUF file whose single tensor holds `fill`.
void write_tiny_gguf(const std::string& path, uint8_t fill) {
    GgufWriter writer;
    writer.set("general.name", GgufValue::string("fingerprint test"));
    writer.add_tensor("t", GgmlType::F32, {16}, std::vector<uint8_t>(64, fill));
    writer.write(path);
}

TEST(ModelFingerprint, MemoIsUsedForTheSameFileAndMissedWhenItChanges) {
    TempDir dir;
    const std::string model_path = dir.file("model.gguf");
    const std::string memo_dir = dir.file("memo");
    write_tiny_gguf(model_path, 1);
    ModelFingerprint first;
    {
        const auto file = GgufFile::open(model_path);
        first = fingerprint_model_file(*file, memo_dir);
        EXPECT_EQ(first, fingerprint_bytes(file->bytes()));
        EXPECT_EQ(fingerprint_model_file(*file, ""), first);
    }
    ASSERT_EQ(std::distance(std::filesystem::directory_iterator(memo_dir), {}), 1);
    {
        const auto file = GgufFile::open(model_path);
        EXPECT_EQ(fingerprint_model_file(*file, memo_dir), first);
    }
    // Same path, same size, new content: the memo must not answer for it.
    write_tiny_gguf(model_path, 2);
    const auto file = GgufFile::open(model_path);
    const ModelFingerprint second = fingerprint_model_file(*file, memo_dir);
    EXPECT_NE(second, first);
    EXPECT_EQ(second, fingerprint_bytes(file->bytes()));
}

// A FIFO planted where the memo would be neither blocks the fingerprint nor answers for it.
TEST(ModelFingerprint, AFifoInPlaceOfTheMemoIsIgnoredWithoutBlocking) {
    TempDir dir;
    const std::string model_path = dir.file("model.gguf");
    const std::string memo_dir = dir.file("memo");
    write_tiny_gguf(model_path, 1);
    const auto file = GgufFile::open(model_path);
    const ModelFingerprint expected = fingerprint_model_file(*file, memo_dir);
    const std::filesystem::path memo = std::filesystem::directory_iterator(memo_dir)->path();
    std::filesystem::remove(memo);
    ASSERT_EQ(::mkfifo(memo.c_str(), 0600), 0);
    // A writer keeps the FIFO open, so that a reader that opened it would wait for data, not for a writer.
    const int writer = ::open(memo.c_str(), O_RDWR | O_NONBLOCK);
    ASSERT_GE(writer, 0);
    auto fingerprint = std::async(std::launch::async, [&] { return fingerprint_model_file(*file, memo_dir); });
    if (fingerprint.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        ADD_FAILURE() << "fingerprint_model_file blocked on a FIFO memo";
        std::_Exit(1);  // the blocked thread cannot be joined
    }
    EXPECT_EQ(fingerprint.get(), expected);
    ::close(writer);
}

}  // namespace
}  // namespace dendro
