// Interoperability with llama.cpp's own GGUF writer (gguf-py): Dendro reads its file, and Dendro's F16, BF16
// and Q8_0 conversions reproduce gguf-py's reference conversions byte for byte.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "temp_dir.h"

namespace dendro {
namespace {

const std::string kFixture = std::string(DENDRO_TEST_DATA) + "/gguf/gguf_py_written.gguf";
constexpr size_t kFixtureAlignment = 64;

class GgufInterop : public ::testing::Test {
protected:
    void SetUp() override { file_ = GgufFile::open(kFixture); }
    std::unique_ptr<GgufFile> file_;
};

TEST_F(GgufInterop, ReadsEveryValue) {
    EXPECT_EQ(file_->version(), 3u);
    EXPECT_EQ(file_->alignment(), kFixtureAlignment);
    EXPECT_EQ(file_->get_string("general.architecture"), "mamba");
    EXPECT_EQ(file_->get_string("general.name"), "gguf-py interop fixture");
    EXPECT_EQ(file_->get_uint("t.u8"), 255u);
    EXPECT_EQ(file_->get_int("t.i8"), -128);
    EXPECT_EQ(file_->get_uint("t.u16"), 65535u);
    EXPECT_EQ(file_->get_int("t.i16"), -32768);
    EXPECT_EQ(file_->get_uint("t.u32"), std::numeric_limits<uint32_t>::max());
    EXPECT_EQ(file_->get_int("t.i32"), std::numeric_limits<int32_t>::min());
    EXPECT_EQ(file_->get_uint("t.u64"), std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(file_->get_int("t.i64"), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(file_->find("t.f32")->type, GgufType::FLOAT32);
    EXPECT_EQ(file_->get_float("t.f32"), static_cast<double>(0.1f));
    EXPECT_EQ(file_->get_float("t.f64"), 0.1);
    EXPECT_TRUE(file_->get_bool("t.bool"));
    EXPECT_EQ(file_->get_string("t.string"), "h\xc3\xa9llo");
    EXPECT_EQ(file_->get_int_array("t.i32_array"), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(file_->get_float_array("t.f32_array"), (std::vector<float>{1.5f, -2.25f}));
    EXPECT_EQ(file_->get_string_array("t.string_array"), (std::vector<std::string>{"a", "", "\xe2\x96\x81the"}));
    EXPECT_EQ(file_->find("t.bool_array")->data, (decltype(GgufValue::data){std::vector<uint8_t>{1, 0}}));
}

TEST_F(GgufInterop, TensorsAreAlignedViews) {
    ASSERT_EQ(file_->tensors().size(), 6u);
    for (const GgufTensorInfo& info : file_->tensors()) {
        SCOPED_TRACE(info.name);
        EXPECT_EQ(info.offset % kFixtureAlignment, 0u);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(info.data) % kFixtureAlignment, 0u);
        EXPECT_EQ(info.nbytes, ggml_row_size(info.type, info.ne[0]) * static_cast<size_t>(info.n_rows()));
    }
    EXPECT_EQ(file_->find_tensor("q8_0")->type, GgmlType::Q8_0);
    EXPECT_EQ(file_->find_tensor("bf16")->ne, (std::vector<int64_t>{32, 4}));
}

TEST_F(GgufInterop, ConversionsMatchGgufPyByteForByte) {
    for (const GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0}) {
        const std::string name = ggml_type_name(type);
        SCOPED_TRACE(name);
        const GgufTensorInfo* source = file_->find_tensor(name + ".source");
        const GgufTensorInfo* expected = file_->find_tensor(name);
        ASSERT_NE(source, nullptr);
        ASSERT_NE(expected, nullptr);
        ASSERT_EQ(source->type, GgmlType::F32);
        const int64_t n = source->n_elements();
        std::vector<float> values(static_cast<size_t>(n));
        std::memcpy(values.data(), source->data, source->nbytes);
        std::vector<uint8_t> converted(expected->nbytes);
        quantize_row(type, values.data(), converted.data(), n);
        EXPECT_EQ(converted, std::vector<uint8_t>(expected->data, expected->data + expected->nbytes));

        // Dequantizing gguf-py's bytes gives what dequantizing ours gives (they are the same bytes), and for
        // F16/BF16 every finite value comes back within the format's rounding.
        std::vector<float> back(static_cast<size_t>(n));
        dequantize_row(type, expected->data, back.data(), n);
        if (type != GgmlType::Q8_0) {
            for (int64_t i = 0; i < n; ++i) {
                if (!std::isfinite(back[i]) || !std::isfinite(values[i])) continue;
                EXPECT_NEAR(back[i], values[i], std::fabs(values[i]) * (type == GgmlType::F16 ? 1e-3 : 4e-3) + 6e-8)
                    << i;
            }
        }
    }
}

TEST_F(GgufInterop, RewritingTheContentReproducesGgufPysBytes) {
    // Same keys in the same order, same tensors: Dendro's writer must lay the file out exactly as gguf-py
    // does (encodings, padding of the header and after every tensor, offsets).
    const test::TempDir dir;
    const std::string path = dir.file("rewritten.gguf");
    GgufWriter writer;
    for (const GgufKeyValue& kv : file_->kvs()) writer.set(kv.key, kv.value);
    for (const GgufTensorInfo& info : file_->tensors()) {
        writer.add_tensor(info.name, info.type, info.ne, std::vector<uint8_t>(info.data, info.data + info.nbytes));
    }
    writer.write(path);
    const std::vector<uint8_t> original(file_->bytes().begin(), file_->bytes().end());
    EXPECT_EQ(test::read_file(path), original);
}

}  // namespace
}  // namespace dendro
