// GGUF writer -> reader round trips: every value type, every supported tensor type, alignments, getters and
// the writer's validation and atomicity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

#include "common/error.h"
#include "format/gguf.h"
#include "temp_dir.h"

namespace dendro {
namespace {

using test::TempDir;

std::vector<uint8_t> pattern_bytes(size_t n, uint8_t seed) {
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
    return bytes;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
}

// Every scalar type at its extremes, and arrays of every element type (empty ones too).
std::vector<GgufKeyValue> all_value_kinds() {
    std::vector<GgufKeyValue> kvs = {
        {"t.u8", GgufValue::u8(255)},
        {"t.i8", GgufValue::i8(-128)},
        {"t.u16", GgufValue::u16(65535)},
        {"t.i16", GgufValue::i16(-32768)},
        {"t.u32", GgufValue::u32(std::numeric_limits<uint32_t>::max())},
        {"t.i32", GgufValue::i32(std::numeric_limits<int32_t>::min())},
        {"t.u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())},
        {"t.i64", GgufValue::i64(std::numeric_limits<int64_t>::min())},
        {"t.f32", GgufValue::f32(1e-5f)},
        {"t.f64", GgufValue::f64(std::numbers::pi)},
        {"t.bool_true", GgufValue::boolean(true)},
        {"t.bool_false", GgufValue::boolean(false)},
        {"t.string", GgufValue::string("h\xc3\xa9llo \"world\"\n")},
        {"t.empty_string", GgufValue::string("")},
        {"t.string_array", GgufValue::string_array({"a", "", "\xe2\x96\x81the", std::string(300, 'x')})},
        {"t.f32_array", GgufValue::f32_array({1.5f, -0.0f, std::numeric_limits<float>::infinity(), 3e38f})},
        {"t.i32_array", GgufValue::i32_array({std::numeric_limits<int32_t>::min(), 0, 7})},
        {"t.u8_array", GgufValue::array(GgufType::UINT8, std::vector<uint64_t>{0, 1, 255})},
        {"t.i8_array", GgufValue::array(GgufType::INT8, std::vector<int64_t>{-128, 127})},
        {"t.u16_array", GgufValue::array(GgufType::UINT16, std::vector<uint64_t>{65535})},
        {"t.i16_array", GgufValue::array(GgufType::INT16, std::vector<int64_t>{-32768, 32767})},
        {"t.u32_array", GgufValue::array(GgufType::UINT32, std::vector<uint64_t>{4000000000u, 1})},
        {"t.u64_array", GgufValue::array(GgufType::UINT64, std::vector<uint64_t>{std::numeric_limits<uint64_t>::max()})},
        {"t.i64_array", GgufValue::array(GgufType::INT64, std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 5})},
        {"t.f64_array", GgufValue::array(GgufType::FLOAT64, std::vector<double>{std::numbers::e, -1e300})},
        {"t.bool_array", GgufValue::array(GgufType::BOOL, std::vector<uint8_t>{1, 0, 1})},
        {"t.empty_u32_array", GgufValue::array(GgufType::UINT32, std::vector<uint64_t>{})},
        {"t.empty_string_array", GgufValue::string_array({})},
        {"t.empty_bool_array", GgufValue::array(GgufType::BOOL, std::vector<uint8_t>{})},
    };
    return kvs;
}

TEST(GgufRoundTrip, EveryValueTypeSurvives) {
    const TempDir dir;
    const std::string path = dir.file("values.gguf");
    GgufWriter writer;
    const auto kvs = all_value_kinds();
    for (const auto& kv : kvs) writer.set(kv.key, kv.value);
    writer.write(path);

    const auto file = GgufFile::open(path);
    EXPECT_EQ(file->version(), 3u);
    EXPECT_EQ(file->alignment(), 32u);
    ASSERT_EQ(file->kvs().size(), kvs.size());
    for (size_t i = 0; i < kvs.size(); ++i) {
        SCOPED_TRACE(kvs[i].key);
        const GgufKeyValue& got = file->kvs()[i];
        EXPECT_EQ(got.key, kvs[i].key);  // insertion order is kept
        EXPECT_EQ(got.value.type, kvs[i].value.type);
        if (got.value.type == GgufType::ARRAY) {
            EXPECT_EQ(got.value.array_type, kvs[i].value.array_type);
        }
        EXPECT_EQ(got.value.data, kvs[i].value.data);
    }
    EXPECT_TRUE(file->tensors().empty());
    EXPECT_TRUE(file->data_section().empty());
}

TEST(GgufRoundTrip, SetReplacesInPlace) {
    const TempDir dir;
    GgufWriter writer;
    writer.set("a", GgufValue::u32(1));
    writer.set("b", GgufValue::u32(2));
    writer.set("a", GgufValue::string("three"));
    writer.write(dir.file("f.gguf"));
    const auto file = GgufFile::open(dir.file("f.gguf"));
    ASSERT_EQ(file->kvs().size(), 2u);
    EXPECT_EQ(file->kvs()[0].key, "a");
    EXPECT_EQ(file->get_string("a"), "three");
    EXPECT_EQ(file->get_uint("b"), 2u);
}

struct TensorCase {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    uint64_t nbytes;
};

void write_and_check_tensors(size_t alignment, bool alignment_as_key) {
    const TempDir dir;
    const std::string path = dir.file("tensors.gguf");
    const std::vector<TensorCase> cases = {
        {"f32.vector", GgmlType::F32, {5}, 20},
        {"f16.matrix", GgmlType::F16, {3, 7}, 42},
        {"bf16.3d", GgmlType::BF16, {4, 3, 2}, 48},
        {"q8_0.matrix", GgmlType::Q8_0, {64, 3}, 2 * 3 * 34},
        {"f32.4d", GgmlType::F32, {2, 1, 3, 2}, 48},
        {"q8_0.row", GgmlType::Q8_0, {32}, 34},
    };
    GgufWriter writer(alignment_as_key ? kGgufDefaultAlignment : alignment);
    if (alignment_as_key) writer.set("general.alignment", GgufValue::u32(static_cast<uint32_t>(alignment)));
    writer.set("general.architecture", GgufValue::string("test"));
    for (size_t i = 0; i < cases.size(); ++i) {
        writer.add_tensor(cases[i].name, cases[i].type, cases[i].ne,
                          pattern_bytes(cases[i].nbytes, static_cast<uint8_t>(i * 31)));
    }
    std::vector<std::pair<size_t, size_t>> progress;
    writer.write(path, [&](size_t done, size_t total) { progress.emplace_back(done, total); });
    ASSERT_EQ(progress.size(), cases.size());
    EXPECT_EQ(progress.back(), std::make_pair(cases.size(), cases.size()));

    const auto file = GgufFile::open(path);
    EXPECT_EQ(file->alignment(), alignment);
    if (alignment != kGgufDefaultAlignment) {
        EXPECT_EQ(file->get_uint("general.alignment"), alignment);
    }
    ASSERT_EQ(file->tensors().size(), cases.size());
    const uint8_t* data_start = file->data_section().data();
    EXPECT_EQ(static_cast<size_t>(data_start - file->bytes().data()) % alignment, 0u);
    uint64_t expected_offset = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        SCOPED_TRACE(cases[i].name);
        const GgufTensorInfo& info = file->tensors()[i];
        EXPECT_EQ(info.name, cases[i].name);
        EXPECT_EQ(info.type, cases[i].type);
        EXPECT_EQ(info.ne, cases[i].ne);
        EXPECT_EQ(info.nbytes, cases[i].nbytes);
        EXPECT_EQ(info.offset, expected_offset);
        EXPECT_EQ(info.offset % alignment, 0u);
        EXPECT_EQ(info.data, data_start + info.offset);  // zero-copy view into the mapping
        EXPECT_EQ(reinterpret_cast<uintptr_t>(info.data) % alignment, 0u);
        const auto expected = pattern_bytes(cases[i].nbytes, static_cast<uint8_t>(i * 31));
        EXPECT_EQ(std::vector<uint8_t>(info.data, info.data + info.nbytes), expected);
        EXPECT_EQ(file->find_tensor(cases[i].name), &info);
        expected_offset += (info.nbytes + alignment - 1) / alignment * alignment;
    }
    EXPECT_EQ(file->find_tensor("missing"), nullptr);
    // ggml pads after the last tensor too.
    EXPECT_EQ(file->data_section().size(), expected_offset);
}

TEST(GgufRoundTrip, EveryTensorTypeWithDefaultAlignment) { write_and_check_tensors(32, false); }
TEST(GgufRoundTrip, NonDefaultAlignmentFromTheConstructor) { write_and_check_tensors(64, false); }
TEST(GgufRoundTrip, AlignmentOfOne) { write_and_check_tensors(1, false); }
TEST(GgufRoundTrip, AlignmentSetAsKey) { write_and_check_tensors(128, true); }

TEST(GgufRoundTrip, ProducerIsCalledOncePerTensorInOrder) {
    const TempDir dir;
    GgufWriter writer;
    std::vector<std::string> calls;
    const std::vector<float> a = {1.0f, 2.0f, 3.0f};
    const std::vector<float> b = {-1.0f};
    writer.add_tensor("a", GgmlType::F32, {3}, [&](std::vector<uint8_t>& out) {
        calls.push_back("a");
        out = f32_bytes(a);
    });
    writer.add_tensor("b", GgmlType::F32, {1}, [&](std::vector<uint8_t>& out) {
        calls.push_back("b");
        EXPECT_TRUE(out.empty());  // the buffer is handed over cleared
        out = f32_bytes(b);
    });
    writer.write(dir.file("p.gguf"));
    EXPECT_EQ(calls, (std::vector<std::string>{"a", "b"}));
    const auto file = GgufFile::open(dir.file("p.gguf"));
    const auto* tb = file->find_tensor("b");
    ASSERT_NE(tb, nullptr);
    float value;
    std::memcpy(&value, tb->data, sizeof(value));
    EXPECT_EQ(value, -1.0f);
    EXPECT_EQ(tb->offset, 32u);
    EXPECT_EQ(tb->n_elements(), 1);
    EXPECT_EQ(file->find_tensor("a")->shape_string(), "{3}");
}

TEST(GgufRoundTrip, TensorInfoShapeHelpers) {
    GgufTensorInfo info;
    info.ne = {4096, 32, 2};
    EXPECT_EQ(info.n_elements(), 4096 * 64);
    EXPECT_EQ(info.n_rows(), 64);
    EXPECT_EQ(info.shape_string(), "{4096, 32, 2}");
    info.ne = {0, 5};
    EXPECT_EQ(info.n_elements(), 0);
    EXPECT_EQ(info.n_rows(), 5);
}

// --- getters -----------------------------------------------------------------------------------------------

class GgufGetters : public ::testing::Test {
protected:
    void SetUp() override {
        GgufWriter writer;
        for (const auto& kv : all_value_kinds()) writer.set(kv.key, kv.value);
        writer.write(dir_.file("g.gguf"));
        file_ = GgufFile::open(dir_.file("g.gguf"));
    }

    // Runs `f`, expecting a dendro::Error whose message contains every fragment.
    template <typename F>
    void expect_error(F f, std::initializer_list<const char*> fragments) {
        try {
            f();
            ADD_FAILURE() << "expected an error";
        } catch (const Error& e) {
            for (const char* fragment : fragments) {
                EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
            }
        }
    }

    TempDir dir_;
    std::unique_ptr<GgufFile> file_;
};

TEST_F(GgufGetters, IntegersOfEveryWidth) {
    EXPECT_EQ(file_->get_uint("t.u8"), 255u);
    EXPECT_EQ(file_->get_uint("t.u16"), 65535u);
    EXPECT_EQ(file_->get_uint("t.u64"), std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(file_->get_int("t.i8"), -128);
    EXPECT_EQ(file_->get_int("t.u32"), 4294967295);
    EXPECT_EQ(file_->get_int("t.i64"), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(file_->get_uint_opt("t.u8"), 255u);
    EXPECT_EQ(file_->get_uint_opt("nope"), std::nullopt);
    expect_error([&] { file_->get_uint("t.i8"); }, {"t.i8", "-128", "non-negative"});
    expect_error([&] { file_->get_int("t.u64"); }, {"t.u64", "too large"});
    expect_error([&] { file_->get_uint("t.f32"); }, {"t.f32", "f32", "integer"});
    expect_error([&] { file_->get_uint("t.missing"); }, {"g.gguf", "missing key 't.missing'"});
    expect_error([&] { file_->get_int("t.string"); }, {"t.string", "str"});
}

TEST_F(GgufGetters, FloatsBoolsStrings) {
    EXPECT_EQ(file_->get_float("t.f32"), static_cast<double>(1e-5f));
    EXPECT_EQ(file_->get_float("t.f64"), std::numbers::pi);
    EXPECT_EQ(file_->get_float_opt("nope"), std::nullopt);
    EXPECT_TRUE(file_->get_bool("t.bool_true"));
    EXPECT_EQ(file_->get_bool_opt("t.bool_false"), false);
    EXPECT_EQ(file_->get_bool_opt("nope"), std::nullopt);
    EXPECT_EQ(file_->get_string("t.empty_string"), "");
    EXPECT_EQ(file_->get_string_opt("t.string"), std::string("h\xc3\xa9llo \"world\"\n"));
    EXPECT_EQ(file_->get_string_opt("nope"), std::nullopt);
    expect_error([&] { file_->get_float("t.u32"); }, {"t.u32", "f32 or f64"});
    expect_error([&] { file_->get_bool("t.u8"); }, {"t.u8", "bool"});
    expect_error([&] { file_->get_string("t.string_array"); }, {"t.string_array", "array of str"});
    expect_error([&] { file_->get_string_opt("t.u8"); }, {"t.u8"});
    expect_error([&] { file_->get_float("nope"); }, {"missing key 'nope'"});
}

TEST_F(GgufGetters, Arrays) {
    const auto& strings = file_->get_string_array("t.string_array");
    ASSERT_EQ(strings.size(), 4u);
    EXPECT_EQ(strings[1], "");
    EXPECT_EQ(strings[3].size(), 300u);
    EXPECT_TRUE(file_->get_string_array("t.empty_string_array").empty());
    EXPECT_EQ(file_->get_float_array("t.f32_array")[0], 1.5f);
    EXPECT_EQ(file_->get_float_array("t.f64_array").size(), 2u);
    EXPECT_EQ(file_->get_int_array("t.i32_array"), (std::vector<int64_t>{std::numeric_limits<int32_t>::min(), 0, 7}));
    EXPECT_EQ(file_->get_int_array("t.u32_array"), (std::vector<int64_t>{4000000000, 1}));
    EXPECT_TRUE(file_->get_int_array("t.empty_u32_array").empty());
    expect_error([&] { file_->get_int_array("t.u64_array"); }, {"t.u64_array", "element 0", "too large"});
    expect_error([&] { file_->get_int_array("t.f32_array"); }, {"t.f32_array", "array of integers"});
    expect_error([&] { file_->get_float_array("t.i32_array"); }, {"t.i32_array"});
    expect_error([&] { file_->get_string_array("t.string"); }, {"t.string"});
    EXPECT_EQ(file_->find("t.u8_array")->array_size(), 3u);
    EXPECT_EQ(file_->find("t.u8")->array_size(), 0u);
}

TEST(GgufValueText, RendersScalarsStringsAndArrays) {
    EXPECT_EQ(gguf_value_to_string(GgufValue::u32(42)), "42");
    EXPECT_EQ(gguf_value_to_string(GgufValue::i8(-3)), "-3");
    EXPECT_EQ(gguf_value_to_string(GgufValue::f32(1e-5f)), "1e-05");
    EXPECT_EQ(gguf_value_to_string(GgufValue::f64(0.1)), "0.1");
    EXPECT_EQ(gguf_value_to_string(GgufValue::boolean(true)), "true");
    EXPECT_EQ(gguf_value_to_string(GgufValue::string("a\"b\n\x01")), "\"a\\\"b\\n\\x01\"");
    EXPECT_EQ(gguf_value_to_string(GgufValue::string("abcdef"), 8, 3), "\"abc\"... (6 bytes)");
    EXPECT_EQ(gguf_value_to_string(GgufValue::i32_array({1, 2, 3}), 2), "array<i32>[3] {1, 2, ...}");
    EXPECT_EQ(gguf_value_to_string(GgufValue::string_array({})), "array<str>[0] {}");
    EXPECT_EQ(gguf_value_to_string(GgufValue::array(GgufType::BOOL, std::vector<uint8_t>{1, 0})),
              "array<bool>[2] {true, false}");
}

// --- writer validation and atomicity -----------------------------------------------------------------------

TEST(GgufWriterValidation, RejectsBadValues) {
    GgufWriter writer;
    EXPECT_THROW(writer.set("", GgufValue::u32(1)), Error);
    EXPECT_THROW(GgufValue::array(GgufType::ARRAY, std::vector<uint64_t>{}), Error);        // nested
    EXPECT_THROW(GgufValue::array(GgufType::UINT8, std::vector<int64_t>{1}), Error);        // wrong holder
    EXPECT_THROW(GgufValue::array(GgufType::UINT8, std::vector<uint64_t>{256}), Error);     // out of range
    EXPECT_THROW(GgufValue::array(GgufType::INT16, std::vector<int64_t>{-40000}), Error);   // out of range
    EXPECT_THROW(GgufValue::array(static_cast<GgufType>(13), std::vector<uint64_t>{}), Error);
    GgufValue bad = GgufValue::u8(1);
    bad.data = uint64_t{300};
    EXPECT_THROW(writer.set("k", bad), Error);
    bad = GgufValue::string("s");
    bad.data = 1.0;
    EXPECT_THROW(writer.set("k", bad), Error);
    bad.type = static_cast<GgufType>(99);
    EXPECT_THROW(writer.set("k", bad), Error);
}

TEST(GgufWriterValidation, RejectsBadAlignment) {
    EXPECT_THROW(GgufWriter(0), Error);
    EXPECT_THROW(GgufWriter(48), Error);
    EXPECT_THROW(GgufWriter(size_t{1} << 33), Error);
    GgufWriter writer;
    EXPECT_THROW(writer.set("general.alignment", GgufValue::u64(64)), Error);
    EXPECT_THROW(writer.set("general.alignment", GgufValue::u32(24)), Error);
    EXPECT_THROW(writer.set("general.alignment", GgufValue::u32(0)), Error);
}

TEST(GgufWriterValidation, RejectsBadTensors) {
    GgufWriter writer;
    writer.add_tensor(std::string(63, 'n'), GgmlType::F32, {1}, f32_bytes({1.0f}));
    EXPECT_THROW(writer.add_tensor(std::string(64, 'n'), GgmlType::F32, {1}, f32_bytes({1.0f})), Error);
    EXPECT_THROW(writer.add_tensor(std::string(63, 'n'), GgmlType::F32, {1}, f32_bytes({1.0f})), Error);
    EXPECT_THROW(writer.add_tensor("no_dims", GgmlType::F32, {}, std::vector<uint8_t>{}), Error);
    EXPECT_THROW(writer.add_tensor("five_dims", GgmlType::F32, {1, 1, 1, 1, 1}, f32_bytes({1.0f})), Error);
    EXPECT_THROW(writer.add_tensor("negative", GgmlType::F32, {-1}, std::vector<uint8_t>{}), Error);
    EXPECT_THROW(writer.add_tensor("partial_block", GgmlType::Q8_0, {33}, std::vector<uint8_t>(34)), Error);
    EXPECT_THROW(writer.add_tensor("wrong_size", GgmlType::F16, {4}, std::vector<uint8_t>(7)), Error);
    EXPECT_THROW(writer.add_tensor("overflow", GgmlType::F32, {1LL << 40, 1LL << 40}, std::vector<uint8_t>{}),
                 Error);
    EXPECT_THROW(writer.add_tensor("unknown_type", static_cast<GgmlType>(4), {32}, std::vector<uint8_t>{}), Error);
    EXPECT_THROW(writer.add_tensor("no_producer", GgmlType::F32, {1}, GgufWriter::TensorProducer{}), Error);
}

TEST(GgufWriterAtomicity, FailingProducerLeavesNoFileAndKeepsTheOldOne) {
    const TempDir dir;
    const std::string path = dir.file("model.gguf");
    GgufWriter good;
    good.set("version", GgufValue::u32(1));
    good.write(path);
    const auto original = test::read_file(path);

    GgufWriter short_producer;
    short_producer.set("version", GgufValue::u32(2));
    short_producer.add_tensor("t", GgmlType::F32, {4}, [](std::vector<uint8_t>& out) { out.resize(15); });
    try {
        short_producer.write(path);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("'t'"), std::string::npos) << message;
        EXPECT_NE(message.find("16"), std::string::npos) << message;
        EXPECT_NE(message.find("15"), std::string::npos) << message;
    }
    GgufWriter throwing_producer;
    throwing_producer.add_tensor("t", GgmlType::F32, {4}, [](std::vector<uint8_t>&) { throw Error("boom"); });
    EXPECT_THROW(throwing_producer.write(path), Error);

    EXPECT_EQ(dir.entries(), (std::vector<std::string>{"model.gguf"}));  // no temporary files left behind
    EXPECT_EQ(test::read_file(path), original);
    EXPECT_EQ(GgufFile::open(path)->get_uint("version"), 1u);
}

TEST(GgufWriterAtomicity, UnwritableDirectoryIsAnError) {
    GgufWriter writer;
    EXPECT_THROW(writer.write("/nonexistent-dendro-dir/x.gguf"), Error);
}

TEST(GgufReader, RejectsUnsupportedTensorTypeNamingTensorAndType) {
    const TempDir dir;
    GgufWriter writer;
    writer.add_tensor("fine", GgmlType::F32, {1}, f32_bytes({1.0f}));
    writer.add_tensor("blk.0.ssm_in.weight", GgmlType::Q8_K, {256}, std::vector<uint8_t>(292));
    writer.write(dir.file("q8k.gguf"));
    try {
        GgufFile::open(dir.file("q8k.gguf"));
        FAIL() << "expected an error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("q8k.gguf"), std::string::npos) << message;
        EXPECT_NE(message.find("blk.0.ssm_in.weight"), std::string::npos) << message;
        EXPECT_NE(message.find("q8_K"), std::string::npos) << message;
    }
}

TEST(GgufReader, MissingFileAndDirectoryAreErrors) {
    const TempDir dir;
    EXPECT_THROW(GgufFile::open(dir.file("absent.gguf")), Error);
    EXPECT_THROW(GgufFile::open(dir.path()), Error);
}

}  // namespace
}  // namespace dendro
