// pytorch_model.bin read without Python (tools/convert/torch_*.cpp) and the mamba_ssm layout
// (tools/convert/mamba_ssm_checkpoint.cpp): real torch.save files (tests/data/torch, tools/make_torch_fixtures.py)
// read back exactly; hostile containers and pickles, built here byte by byte, each refused with one error that
// names the problem; a mamba_ssm Mamba-1 directory converts to the same GGUF tensors, and so the same logits,
// as the HF directory it was made from.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "common/error.h"
#include "format/gguf.h"
#include "hf_json.h"
#include "hf_reference.h"
#include "mamba_ssm_checkpoint.h"
#include "model/model.h"
#include "run_command.h"
#include "safetensors.h"
#include "temp_dir.h"
#include "torch_checkpoint.h"
#include "torch_pickle.h"

namespace dendro {
namespace {

namespace fs = std::filesystem;

const std::string kTorchData = std::string(DENDRO_TEST_DATA) + "/torch";

// --- a torch.save-shaped archive, written here so that each hostile case differs from a valid file in one place

// Pickle opcodes as torch.save (protocol 2) emits them for a state dict.
class PickleWriter {
public:
    PickleWriter& op(uint8_t code) {
        bytes.push_back(code);
        return *this;
    }
    PickleWriter& raw(const std::string& text) {
        bytes.insert(bytes.end(), text.begin(), text.end());
        return *this;
    }
    PickleWriter& u32(uint32_t v) {
        for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(v >> (8 * i)));
        return *this;
    }
    PickleWriter& proto() { return op(0x80).op(2); }
    PickleWriter& global(const std::string& module, const std::string& name) {
        return op('c').raw(module + "\n" + name + "\n");
    }
    PickleWriter& str(const std::string& s) { return op('X').u32(static_cast<uint32_t>(s.size())).raw(s); }
    PickleWriter& integer(int64_t v) {
        if (v >= 0 && v < 256) return op('K').op(static_cast<uint8_t>(v));
        if (v >= INT32_MIN && v <= INT32_MAX) return op('J').u32(static_cast<uint32_t>(v));
        op(0x8a).op(8);
        for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
        return *this;
    }
    PickleWriter& mark() { return op('('); }
    PickleWriter& tuple() { return op('t'); }
    PickleWriter& empty_tuple() { return op(')'); }
    PickleWriter& reduce() { return op('R'); }
    PickleWriter& ordered_dict() { return global("collections", "OrderedDict").empty_tuple().reduce(); }
    PickleWriter& stop() { return op('.'); }

    std::vector<uint8_t> bytes;
};

struct TensorSpec {
    std::string name;
    int64_t numel = 0;  // of the storage
    std::vector<int64_t> shape;
    std::vector<int64_t> stride;
    int64_t offset = 0;
    std::string key = "0";
    std::string storage_type = "FloatStorage";
};

void write_tensor(PickleWriter& w, const TensorSpec& t) {
    w.global("torch._utils", "_rebuild_tensor_v2").mark();
    w.mark().str("storage").global("torch", t.storage_type).str(t.key).str("cpu").integer(t.numel).tuple().op('Q');
    w.integer(t.offset).mark();
    for (const int64_t d : t.shape) w.integer(d);
    w.tuple().mark();
    for (const int64_t s : t.stride) w.integer(s);
    w.tuple().op(0x89).ordered_dict().tuple().reduce();
}

// An OrderedDict of the tensors, the way torch.save pickles a state dict.
std::vector<uint8_t> state_dict_pickle(const std::vector<TensorSpec>& tensors) {
    PickleWriter w;
    w.proto().ordered_dict().mark();
    for (const TensorSpec& t : tensors) {
        w.str(t.name);
        write_tensor(w, t);
    }
    w.op('u').stop();
    return w.bytes;
}

uint32_t crc32_of(const std::vector<uint8_t>& bytes) {
    uint32_t crc = 0xffffffffu;
    for (const uint8_t b : bytes) {
        crc ^= b;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

struct ZipEntry {
    std::string name;
    std::vector<uint8_t> data;
    uint16_t method = 0;                   // 0 = stored; 8 = deflate (claimed only)
    std::optional<uint32_t> claimed_size;  // size written to the headers instead of data.size()
};

void put16(std::vector<uint8_t>& out, uint32_t v) {
    out.push_back(static_cast<uint8_t>(v));
    out.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
    put16(out, v & 0xffff);
    put16(out, v >> 16);
}

// A minimal zip archive (local headers, central directory, end record), as torch.save's writer makes them.
std::vector<uint8_t> zip_archive(const std::vector<ZipEntry>& entries) {
    constexpr uint32_t kDosDate = 0x21;  // 1980-01-01
    std::vector<uint8_t> out;
    std::vector<uint8_t> central;
    for (const ZipEntry& e : entries) {
        const uint32_t size = e.claimed_size.value_or(static_cast<uint32_t>(e.data.size()));
        const uint32_t crc = crc32_of(e.data);
        const uint32_t local_offset = static_cast<uint32_t>(out.size());
        put32(out, 0x04034b50);
        put16(out, 20), put16(out, 0), put16(out, e.method), put16(out, 0), put16(out, kDosDate);
        put32(out, crc), put32(out, size), put32(out, size);
        put16(out, static_cast<uint32_t>(e.name.size())), put16(out, 0);
        out.insert(out.end(), e.name.begin(), e.name.end());
        out.insert(out.end(), e.data.begin(), e.data.end());

        put32(central, 0x02014b50);
        put16(central, 20), put16(central, 20), put16(central, 0), put16(central, e.method), put16(central, 0);
        put16(central, kDosDate);
        put32(central, crc), put32(central, size), put32(central, size);
        put16(central, static_cast<uint32_t>(e.name.size())), put16(central, 0), put16(central, 0);
        put16(central, 0), put16(central, 0), put32(central, 0), put32(central, local_offset);
        central.insert(central.end(), e.name.begin(), e.name.end());
    }
    const uint32_t central_offset = static_cast<uint32_t>(out.size());
    out.insert(out.end(), central.begin(), central.end());
    put32(out, 0x06054b50);
    put16(out, 0), put16(out, 0);
    put16(out, static_cast<uint32_t>(entries.size())), put16(out, static_cast<uint32_t>(entries.size()));
    put32(out, static_cast<uint32_t>(central.size())), put32(out, central_offset), put16(out, 0);
    return out;
}

std::vector<uint8_t> floats_bytes(const std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
}

std::vector<uint8_t> iota_floats(size_t n) {
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) values[i] = static_cast<float>(i);
    return floats_bytes(values);
}

// The records torch.save writes: archive/data.pkl, archive/byteorder, archive/data/<key>.
std::vector<ZipEntry> torch_entries(std::vector<uint8_t> pickle, std::vector<uint8_t> storage0) {
    return {{"archive/data.pkl", std::move(pickle)},
            {"archive/byteorder", {'l', 'i', 't', 't', 'l', 'e'}},
            {"archive/data/0", std::move(storage0)}};
}

const TensorSpec kMatrix{"w", 6, {2, 3}, {3, 1}};

class TorchFile : public ::testing::Test {
protected:
    std::string write(const std::vector<uint8_t>& bytes) {
        const std::string path = tmp_.file("pytorch_model.bin");
        test::write_file(path, bytes);
        return path;
    }
    // The error TorchCheckpoint::open gives for the file; a test failure when it opens.
    std::string open_error(const std::vector<uint8_t>& bytes) {
        const std::string path = write(bytes);
        try {
            TorchCheckpoint::open(path);
        } catch (const Error& e) {
            const std::string message = e.what();
            EXPECT_NE(message.find(path), std::string::npos) << "error does not name the file: " << message;
            EXPECT_EQ(message.find('\n'), std::string::npos) << "error is not one line: " << message;
            return message;
        }
        ADD_FAILURE() << "opened a hostile file";
        return "";
    }
    std::string pickle_error(const std::vector<uint8_t>& pickle) {
        return open_error(zip_archive(torch_entries(pickle, iota_floats(6))));
    }
    test::TempDir tmp_;
};

TEST_F(TorchFile, HandBuiltStateDictReadsBack) {
    const std::string path = write(zip_archive(torch_entries(state_dict_pickle({kMatrix}), iota_floats(6))));
    const auto checkpoint = TorchCheckpoint::open(path);
    ASSERT_EQ(checkpoint->tensors().size(), 1u);
    const CheckpointTensor* w = checkpoint->find("w");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->dtype, "F32");
    EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(std::vector<uint8_t>(w->data.begin(), w->data.end()), iota_floats(6));
    EXPECT_EQ(w->file, path);
}

TEST_F(TorchFile, TorchSavedViewsReadAtTheirOffsets) {
    const auto checkpoint = TorchCheckpoint::open(kTorchData + "/views.bin");
    const CheckpointTensor* offset = checkpoint->find("offset");
    const CheckpointTensor* whole = checkpoint->find("whole");
    ASSERT_TRUE(offset && whole);
    EXPECT_EQ(offset->shape, (std::vector<int64_t>{2, 4}));
    EXPECT_EQ(whole->shape, (std::vector<int64_t>{10}));
    std::vector<float> values(8);
    ASSERT_EQ(offset->data.size(), values.size() * sizeof(float));
    std::memcpy(values.data(), offset->data.data(), offset->data.size());
    EXPECT_EQ(values, (std::vector<float>{2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(offset->data.data(), whole->data.data() + 2 * sizeof(float)) << "views of one storage share its bytes";
}

// --- hostile pickles

TEST_F(TorchFile, GlobalOsSystemRefused) {
    PickleWriter w;
    w.proto().global("os", "system").str("touch /tmp/dendro-pwned").op(0x85).reduce().stop();
    const std::string error = pickle_error(w.bytes);
    EXPECT_NE(error.find("global 'os.system' is not allowed"), std::string::npos) << error;
    EXPECT_NE(error.find("offset 2"), std::string::npos) << error;
    EXPECT_FALSE(fs::exists("/tmp/dendro-pwned"));
}

TEST_F(TorchFile, GlobalBuiltinsEvalRefused) {
    PickleWriter w;
    w.proto().global("builtins", "eval").str("1").op(0x85).reduce().stop();
    EXPECT_NE(pickle_error(w.bytes).find("global 'builtins.eval' is not allowed"), std::string::npos);
}

TEST_F(TorchFile, GlobalOtherTorchFunctionRefused) {
    PickleWriter w;
    w.proto().global("torch", "load").stop();
    EXPECT_NE(pickle_error(w.bytes).find("global 'torch.load' is not allowed"), std::string::npos);
}

TEST_F(TorchFile, UnknownOpcodeRefused) {
    PickleWriter w;
    w.proto().op(0xff).stop();
    const std::string error = pickle_error(w.bytes);
    EXPECT_NE(error.find("offset 2: unknown opcode 0xff"), std::string::npos) << error;
}

TEST_F(TorchFile, OpcodeOfALaterProtocolRefusedByName) {
    PickleWriter w;
    w.proto().str("os").str("system").op(0x93).stop();  // STACK_GLOBAL (protocol 4)
    EXPECT_NE(pickle_error(w.bytes).find("opcode STACK_GLOBAL is not accepted"), std::string::npos);
    PickleWriter v4;
    v4.op(0x80).op(4).stop();
    EXPECT_NE(pickle_error(v4.bytes).find("PROTO 4"), std::string::npos);
}

TEST_F(TorchFile, TruncatedPickleRefused) {
    PickleWriter w;
    w.proto().op('X').u32(1000).raw("short");
    EXPECT_NE(pickle_error(w.bytes).find("truncated"), std::string::npos);
}

TEST_F(TorchFile, ObjectBombRefused) {
    PickleWriter w;
    w.proto();
    for (uint64_t i = 0; i <= kTorchPickleMaxObjects; ++i) w.op(']');
    w.stop();
    EXPECT_NE(pickle_error(w.bytes).find(concat("more than ", kTorchPickleMaxObjects, " objects")), std::string::npos);
}

TEST_F(TorchFile, DeepNestingNeitherRecursesNorCrashes) {
    // A list nested 500k deep: the arena holds it flat, so neither reading nor freeing it recurses.
    constexpr int kDepth = 500'000;
    PickleWriter w;
    w.proto();
    for (int i = 0; i < kDepth; ++i) w.op(']');
    for (int i = 1; i < kDepth; ++i) w.op('a');
    w.stop();
    EXPECT_NE(pickle_error(w.bytes).find("the pickle holds a list, not a state dict"), std::string::npos);
}

TEST_F(TorchFile, MemoGetOfUnsetEntryRefused) {
    PickleWriter w;
    w.proto().op('h').op(7).stop();
    EXPECT_NE(pickle_error(w.bytes).find("BINGET of memo entry 7, which was never set"), std::string::npos);
}

TEST_F(TorchFile, StorageTypeCalledRefused) {
    PickleWriter w;
    w.proto().global("torch", "FloatStorage").empty_tuple().reduce().stop();
    EXPECT_NE(pickle_error(w.bytes).find("REDUCE calls torch.FloatStorage"), std::string::npos);
}

TEST_F(TorchFile, NonTensorEntryRefusedByName) {
    PickleWriter w;
    w.proto().ordered_dict().str("step").integer(3).op('s').stop();
    EXPECT_NE(pickle_error(w.bytes).find("state dict entry 'step' is an int, not a tensor"), std::string::npos);
}

// --- hostile storages and views

TEST_F(TorchFile, StorageShorterThanItsTensorRefused) {
    TensorSpec t = kMatrix;
    t.shape = {3, 3};
    const std::string error = pickle_error(state_dict_pickle({t}));
    EXPECT_NE(error.find("tensor 'w'"), std::string::npos) << error;
    EXPECT_NE(error.find("storage shorter than its tensor"), std::string::npos) << error;
}

TEST_F(TorchFile, RecordShorterThanItsStorageRefused) {
    TensorSpec t = kMatrix;
    t.numel = 8;
    t.shape = {2, 4};
    t.stride = {4, 1};
    const std::string error = pickle_error(state_dict_pickle({t}));
    EXPECT_NE(error.find("needs 32 bytes but record 'archive/data/0' holds 24"), std::string::npos) << error;
}

TEST_F(TorchFile, OffsetPastTheEndRefused) {
    TensorSpec t = kMatrix;
    t.offset = 7;
    t.shape = {0};
    t.stride = {1};
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("storage offset 7 lies past the end of its 6-element storage"),
              std::string::npos);
    t.offset = 4;
    t.shape = {3};
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("storage shorter than its tensor"), std::string::npos);
}

TEST_F(TorchFile, ElementCountOverflowRefused) {
    TensorSpec t = kMatrix;
    t.shape = {int64_t{1} << 40, int64_t{1} << 40};
    t.stride = {int64_t{1} << 40, 1};
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("element count"), std::string::npos);
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("overflows"), std::string::npos);
}

TEST_F(TorchFile, NonContiguousStrideRefused) {
    TensorSpec t = kMatrix;
    t.shape = {3, 2};
    t.stride = {1, 3};  // a transposed view
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("non-contiguous"), std::string::npos);
    try {
        TorchCheckpoint::open(kTorchData + "/noncontiguous.bin");
        ADD_FAILURE() << "a transposed torch.save tensor was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tensor 'transposed'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("non-contiguous"), std::string::npos) << e.what();
    }
}

TEST_F(TorchFile, MissingStorageRecordRefused) {
    TensorSpec t = kMatrix;
    t.key = "7";
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("storage record 'archive/data/7' is missing"), std::string::npos);
}

TEST_F(TorchFile, StorageKeyLeavingTheFolderRefused) {
    TensorSpec t = kMatrix;
    t.key = "../data.pkl";
    EXPECT_NE(pickle_error(state_dict_pickle({t})).find("is not a plain record name"), std::string::npos);
}

// --- hostile containers

TEST_F(TorchFile, TruncatedZipRefused) {
    std::vector<uint8_t> bytes = zip_archive(torch_entries(state_dict_pickle({kMatrix}), iota_floats(6)));
    bytes.resize(bytes.size() / 2);
    EXPECT_NE(open_error(bytes).find("not a valid zip archive"), std::string::npos);
}

TEST_F(TorchFile, OversizedRecordRefused) {
    std::vector<ZipEntry> entries = torch_entries(state_dict_pickle({kMatrix}), iota_floats(6));
    entries.back().claimed_size = 1u << 30;
    const std::string error = open_error(zip_archive(entries));
    EXPECT_NE(error.find("zip record 'archive/data/0': its 1073741824 bytes"), std::string::npos) << error;
    EXPECT_NE(error.find("run past the end"), std::string::npos) << error;
}

TEST_F(TorchFile, CompressedRecordRefusedByName) {
    std::vector<ZipEntry> entries = torch_entries(state_dict_pickle({kMatrix}), iota_floats(6));
    entries.back().method = 8;
    EXPECT_NE(open_error(zip_archive(entries)).find("zip record 'archive/data/0' is compressed"), std::string::npos);
}

TEST_F(TorchFile, DuplicateRecordRefused) {
    std::vector<ZipEntry> entries = torch_entries(state_dict_pickle({kMatrix}), iota_floats(6));
    entries.push_back({"archive/data/0", iota_floats(6)});
    const std::string error = open_error(zip_archive(entries));
    EXPECT_NE(error.find("zip record 'archive/data/0' appears twice"), std::string::npos) << error;
}

TEST_F(TorchFile, CorruptRecordRefusedByCrc) {
    std::vector<uint8_t> bytes = zip_archive(torch_entries(state_dict_pickle({kMatrix}), iota_floats(6)));
    const std::vector<uint8_t> storage = iota_floats(6);
    const auto at = std::search(bytes.begin(), bytes.end(), storage.begin(), storage.end());
    ASSERT_NE(at, bytes.end());
    at[5] ^= 0x40;
    EXPECT_NE(open_error(bytes).find("zip record 'archive/data/0': CRC-32 mismatch"), std::string::npos);
}

TEST_F(TorchFile, ZipWithoutDataPklRefused) {
    EXPECT_NE(open_error(zip_archive({{"weights/tensor", iota_floats(6)}})).find("not one written by torch.save"),
              std::string::npos);
}

TEST_F(TorchFile, LegacyFormatRefusedByName) {
    try {
        TorchCheckpoint::open(kTorchData + "/legacy.bin");
        ADD_FAILURE() << "the legacy format was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("legacy (pre-zip, torch < 1.6)"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("torch.save(torch.load(path), path)"), std::string::npos) << e.what();
    }
}

TEST_F(TorchFile, ConvertCliReportsHostilePickleAsOneLine) {
    PickleWriter w;
    w.proto().global("os", "system").str("true").op(0x85).reduce().stop();
    write(zip_archive(torch_entries(w.bytes, iota_floats(6))));
    fs::copy_file(kTorchData + "/mamba1_tied_bpe/config.json", tmp_.file("config.json"));
    const std::string out = tmp_.file("out.gguf");
    const test::CommandResult r = test::run_command(test::shell_quote(DENDRO_EXE) + " convert " +
                                                    test::shell_quote(tmp_.path()) + " -o " + test::shell_quote(out));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("global 'os.system' is not allowed"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out));
}

// --- the mamba_ssm layout

nlohmann::json mamba1_config() {
    return nlohmann::json::parse(R"({"d_model": 32, "n_layer": 2, "vocab_size": 50277, "ssm_cfg": {},
        "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8})");
}

std::string config_error(const nlohmann::json& config) {
    try {
        mamba_ssm_to_hf_mamba_config(config, "cfg.json");
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "accepted " << config.dump();
    return "";
}

TEST(MambaSsmConfig, Mamba1MapsToHfConfigWithPaddedVocabulary) {
    nlohmann::json config = mamba1_config();
    EXPECT_TRUE(is_mamba_ssm_config(config));
    const HfMambaConfig hf = mamba_ssm_to_hf_mamba_config(config, "cfg.json");
    EXPECT_EQ(hf.vocab_size, 50280);  // 50277 rounded up to a multiple of 8
    EXPECT_EQ(hf.hidden_size, 32);
    EXPECT_EQ(hf.n_layer, 2);
    EXPECT_EQ(hf.intermediate_size, 64);
    EXPECT_EQ(hf.state_size, 16);
    EXPECT_EQ(hf.conv_kernel, 4);
    EXPECT_EQ(hf.time_step_rank, 2);  // "auto": ceil(32 / 16)
    EXPECT_TRUE(hf.tie_word_embeddings);
    EXPECT_TRUE(hf.use_conv_bias);
    EXPECT_FALSE(hf.use_bias);
    EXPECT_DOUBLE_EQ(hf.layer_norm_epsilon, 1e-5);

    config["ssm_cfg"] = {{"d_state", 4}, {"d_conv", 3}, {"expand", 3}, {"dt_rank", 5}, {"bias", true},
                         {"conv_bias", false}};
    config["tie_embeddings"] = false;
    config["pad_vocab_size_multiple"] = 1;
    const HfMambaConfig custom = mamba_ssm_to_hf_mamba_config(config, "cfg.json");
    EXPECT_EQ(custom.vocab_size, 50277);
    EXPECT_EQ(custom.intermediate_size, 96);
    EXPECT_EQ(custom.state_size, 4);
    EXPECT_EQ(custom.conv_kernel, 3);
    EXPECT_EQ(custom.time_step_rank, 5);
    EXPECT_FALSE(custom.tie_word_embeddings);
    EXPECT_TRUE(custom.use_bias);
    EXPECT_FALSE(custom.use_conv_bias);
}

TEST(MambaSsmConfig, WhatDendroCannotHonourIsRefusedByKey) {
    nlohmann::json config = mamba1_config();
    config["rms_norm"] = false;
    EXPECT_NE(config_error(config).find("'rms_norm' is false"), std::string::npos);
    config = mamba1_config();
    config["d_intermediate"] = 128;
    EXPECT_NE(config_error(config).find("'d_intermediate'"), std::string::npos);
    config = mamba1_config();
    config["attn_layer_idx"] = {1};
    EXPECT_NE(config_error(config).find("'attn_layer_idx'"), std::string::npos);
    config = mamba1_config();
    config["ssm_cfg"] = {{"bimamba", true}};
    EXPECT_NE(config_error(config).find("ssm_cfg key 'bimamba'"), std::string::npos);
    config = mamba1_config();
    config["ssm_cfg"] = {{"layer", "Mamba3"}};
    EXPECT_NE(config_error(config).find("ssm_cfg.layer \"Mamba3\""), std::string::npos);
    config = mamba1_config();
    config["pad_vocab_size_multiple"] = 0;
    EXPECT_NE(config_error(config).find("'pad_vocab_size_multiple'"), std::string::npos);
}

TEST(MambaSsmConfig, Mamba2HyperParameters) {
    nlohmann::json config = nlohmann::json::parse(
        R"({"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
            "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true,
            "fused_add_norm": true, "pad_vocab_size_multiple": 16, "tie_embeddings": true})");
    const MambaSsmMamba2Config c = parse_mamba_ssm_mamba2_config(config, "cfg.json");  // mamba2-130m's config
    EXPECT_EQ(c.vocab_size, 50288);
    EXPECT_EQ(c.d_inner, 1536);
    EXPECT_EQ(c.n_heads, 24);
    EXPECT_EQ(c.d_state, 128);
    EXPECT_EQ(c.headdim, 64);
    EXPECT_EQ(c.ngroups, 1);
    EXPECT_EQ(c.chunk_size, 256);
    EXPECT_TRUE(std::isinf(c.dt_limit_max));
    EXPECT_FALSE(c.norm_before_gate);

    for (const auto& [key, value, expected] :
         {std::tuple{"D_has_hdim", nlohmann::json(true), "D_has_hdim"}, {"rmsnorm", nlohmann::json(false), "rmsnorm false"},
          {"d_ssm", nlohmann::json(768), "d_ssm 768"}, {"headdim", nlohmann::json(100), "headdim 100"},
          {"ngroups", nlohmann::json(5), "ngroups 5"}, {"dt_limit", nlohmann::json({0.5, 0.1}), "dt_limit"}}) {
        nlohmann::json bad = config;
        bad["ssm_cfg"][key] = value;
        try {
            parse_mamba_ssm_mamba2_config(bad, "cfg.json");
            ADD_FAILURE() << "accepted " << key;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
    }
}

TEST(MambaSsmCheckpoint, Mamba2ReaderGivesHfNamesAndMamba2Shapes) {
    const std::string dir = kTorchData + "/mamba2_bf16";
    // config.json holds a bare Infinity (dt_limit [0.0, Infinity]), as Python's json writes it.
    const MambaSsmMamba2Config c = parse_mamba_ssm_mamba2_config(read_hf_json_file(dir + "/config.json"), dir);
    EXPECT_EQ(c.vocab_size, 64);
    EXPECT_EQ(c.n_heads, 4);
    EXPECT_TRUE(std::isinf(c.dt_limit_max));

    const auto tensors = open_checkpoint_tensors(dir);
    const int64_t conv_dim = c.d_inner + 2 * c.ngroups * c.d_state;
    const int64_t in_proj_rows = 2 * c.d_inner + 2 * c.ngroups * c.d_state + c.n_heads;
    std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
        {"backbone.embeddings.weight", {c.vocab_size, c.d_model}}, {"backbone.norm_f.weight", {c.d_model}},
        {"lm_head.weight", {c.vocab_size, c.d_model}}};
    for (int il = 0; il < c.n_layer; ++il) {
        const std::string p = concat("backbone.layers.", il, ".");
        expected.push_back({p + "norm.weight", {c.d_model}});
        expected.push_back({p + "mixer.in_proj.weight", {in_proj_rows, c.d_model}});
        expected.push_back({p + "mixer.conv1d.weight", {conv_dim, 1, c.d_conv}});
        expected.push_back({p + "mixer.conv1d.bias", {conv_dim}});
        expected.push_back({p + "mixer.dt_bias", {c.n_heads}});
        expected.push_back({p + "mixer.A_log", {c.n_heads}});
        expected.push_back({p + "mixer.D", {c.n_heads}});
        expected.push_back({p + "mixer.norm.weight", {c.d_inner}});
        expected.push_back({p + "mixer.out_proj.weight", {c.d_model, c.d_inner}});
    }
    EXPECT_EQ(tensors->tensors().size(), expected.size());
    for (const auto& [name, shape] : expected) {
        const CheckpointTensor* t = tensors->find(name);
        ASSERT_NE(t, nullptr) << name;
        EXPECT_EQ(t->shape, shape) << name;
        EXPECT_EQ(t->dtype, "BF16") << name;
        EXPECT_EQ(t->data.size(), static_cast<size_t>(t->n_elements()) * 2) << name;
    }
    EXPECT_EQ(tensors->find("lm_head.weight")->data.data(), tensors->find("backbone.embeddings.weight")->data.data())
        << "the tied head shares the embedding's storage";
}

// --- conversion: the mamba_ssm directory gives the HF directory's GGUF

struct ParityCase {
    const char* torch_fixture;  // tests/data/torch/<name>
    const char* hf_fixture;     // tests/data/hf/<name>, the same weights
    const char* outtype;
};

std::string convert(const std::string& dir, const std::string& vocab, const std::string& outtype, const std::string& out) {
    std::string command = test::shell_quote(DENDRO_EXE) + " convert " + test::shell_quote(dir) + " -o " +
                          test::shell_quote(out) + " --outtype " + outtype;
    if (!vocab.empty()) command += " --vocab " + test::shell_quote(vocab);
    const test::CommandResult r = test::run_command(command);
    EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.err;
    return out;
}

// The two GGUF files hold the same tensors: names, types, shapes and bytes.
void expect_same_gguf_tensors(const std::string& ours, const std::string& theirs) {
    const auto a = GgufFile::open(ours);
    const auto b = GgufFile::open(theirs);
    ASSERT_EQ(a->tensors().size(), b->tensors().size());
    for (const GgufTensorInfo& t : b->tensors()) {
        const GgufTensorInfo* u = a->find_tensor(t.name);
        ASSERT_NE(u, nullptr) << t.name;
        EXPECT_EQ(u->type, t.type) << t.name;
        EXPECT_EQ(u->ne, t.ne) << t.name;
        ASSERT_EQ(u->nbytes, t.nbytes) << t.name;
        EXPECT_EQ(std::memcmp(u->data, t.data, t.nbytes), 0) << t.name << " differs";
    }
}

class MambaSsmParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(MambaSsmParity, SameTensorsAndLogitsAsTheHfDirectory) {
    const ParityCase c = GetParam();
    const test::TempDir tmp;
    const std::string hf_dir = test::hf_fixture_dir(c.hf_fixture);
    const std::string ours = convert(kTorchData + "/" + c.torch_fixture, hf_dir, c.outtype, tmp.file("torch.gguf"));
    const std::string theirs = convert(hf_dir, "", c.outtype, tmp.file("hf.gguf"));

    expect_same_gguf_tensors(ours, theirs);

    const test::HfReference ref = test::load_hf_reference(c.hf_fixture);
    const auto model_a = Model::load(ours);
    const auto model_b = Model::load(theirs);
    ASSERT_EQ(model_a->hparams().n_vocab, ref.n_vocab);
    BackendOptions options;
    options.n_threads = 1;
    const auto backend_a = make_cpu_backend(*model_a, options);
    const auto backend_b = make_cpu_backend(*model_b, options);
    for (const test::HfPromptReference& p : ref.prompts) {
        std::vector<float> logits_a(p.ids.size() * static_cast<size_t>(ref.n_vocab));
        std::vector<float> logits_b(logits_a.size());
        backend_a->prefill(0, p.ids, logits_a, /*all_logits=*/true);
        backend_b->prefill(0, p.ids, logits_b, /*all_logits=*/true);
        EXPECT_EQ(logits_a, logits_b) << c.torch_fixture << ": " << p.text;
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MambaSsmParity,
                         ::testing::Values(ParityCase{"mamba1_tied_bpe", "mamba_tied_bpe", "f32"},
                                           ParityCase{"mamba1_f16_spm", "mamba_f16_spm", "f16"},
                                           ParityCase{"mamba2_tied_bpe", "mamba2_tied_bpe", "f32"}),
                         [](const ::testing::TestParamInfo<ParityCase>& info) { return std::string(info.param.torch_fixture); });

// An HF config.json beside a pytorch_model.bin (HF's names; transformers' older save format): the weights are
// read from the torch file, and the GGUF equals the one made from model.safetensors.
TEST(TorchCheckpointConvert, HfConfigWithPytorchModelBinConvertsLikeSafetensors) {
    const std::string hf_dir = test::hf_fixture_dir("mamba_untied_spm");
    const auto safetensors = SafetensorsFile::open(hf_dir + "/model.safetensors");
    std::vector<TensorSpec> specs;
    std::vector<ZipEntry> entries;
    for (const CheckpointTensor& t : safetensors->tensors()) {
        ASSERT_EQ(t.dtype, "F32") << t.name;
        TensorSpec spec{t.name, t.n_elements(), t.shape, std::vector<int64_t>(t.shape.size())};
        int64_t stride = 1;
        for (size_t i = t.shape.size(); i-- > 0;) {
            spec.stride[i] = stride;
            stride *= t.shape[i];
        }
        spec.key = std::to_string(specs.size());
        entries.push_back({"model/data/" + spec.key, std::vector<uint8_t>(t.data.begin(), t.data.end())});
        specs.push_back(std::move(spec));
    }
    entries.push_back({"model/data.pkl", state_dict_pickle(specs)});

    const test::TempDir tmp;
    const std::string dir = tmp.file("torch-hf");
    fs::create_directory(dir);
    for (const fs::directory_entry& f : fs::directory_iterator(hf_dir)) {
        if (f.path().filename() != "model.safetensors") fs::copy_file(f.path(), fs::path(dir) / f.path().filename());
    }
    test::write_file(dir + "/" + TorchCheckpoint::kFileName, zip_archive(entries));

    expect_same_gguf_tensors(convert(dir, "", "f32", tmp.file("torch.gguf")),
                             convert(hf_dir, "", "f32", tmp.file("hf.gguf")));
}

}  // namespace
}  // namespace dendro
