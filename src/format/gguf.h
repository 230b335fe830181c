// GGUF v3 files: a strict, mmap'd, zero-copy reader and a streaming writer.
// Layout and alignment rules follow ggml's gguf: header, key/values, tensor infos, padding to the
// alignment (general.alignment, default 32), then tensor data where each tensor's offset is the running sum
// of the padded sizes of the tensors before it, in info order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "format/ggml_types.h"

namespace dendro {

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr size_t kGgufDefaultAlignment = 32;
inline constexpr size_t kGgufMaxTensorDims = 4;
inline constexpr size_t kGgufMaxNameLength = 63;

enum class GgufType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value. `data` holds signed integers of every width as int64_t, unsigned ones as uint64_t,
// FLOAT32/FLOAT64 as double, BOOL as bool and STRING as std::string; arrays hold the matching vector (bools as
// uint8_t). Arrays are homogeneous and never nested.
struct GgufValue {
    GgufType type = GgufType::UINT32;
    GgufType array_type = GgufType::UINT32;  // element type when type == ARRAY
    std::variant<std::monostate, int64_t, uint64_t, double, bool, std::string,
                 std::vector<int64_t>, std::vector<uint64_t>, std::vector<double>, std::vector<uint8_t> /*bool*/,
                 std::vector<std::string>>
        data;

    static GgufValue u8(uint8_t v);
    static GgufValue i8(int8_t v);
    static GgufValue u16(uint16_t v);
    static GgufValue i16(int16_t v);
    static GgufValue u32(uint32_t v);
    static GgufValue i32(int32_t v);
    static GgufValue u64(uint64_t v);
    static GgufValue i64(int64_t v);
    static GgufValue f32(float v);
    static GgufValue f64(double v);
    static GgufValue boolean(bool v);
    static GgufValue string(std::string v);
    static GgufValue string_array(std::vector<std::string> v);
    static GgufValue f32_array(const std::vector<float>& v);
    static GgufValue i32_array(const std::vector<int32_t>& v);
    // Any other array: element type plus values held in the matching vector (signed ints in int64_t,
    // unsigned in uint64_t, floats in double, bools in uint8_t).
    static GgufValue array(GgufType element_type, decltype(data) values);

    size_t array_size() const;
};

// Human-readable rendering for listings: integers and floats as numbers, strings quoted (cut after
// `max_string_bytes`), arrays as "array<type>[n] {...}" showing at most `max_array_elements` elements.
std::string gguf_value_to_string(const GgufValue& value, size_t max_array_elements = 8,
                                 size_t max_string_bytes = 160);

struct GgufKeyValue {
    std::string key;
    GgufValue value;
};

struct GgufTensorInfo {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<int64_t> ne;    // ggml order: ne[0] is the row length (fastest dimension)
    uint64_t offset = 0;        // relative to the start of the data section
    uint64_t nbytes = 0;
    const uint8_t* data = nullptr;  // points into the mapping (reader only)

    int64_t n_elements() const;
    int64_t n_rows() const;  // product of ne[1..]; 1 for a vector or scalar
    std::string shape_string() const;  // "{4096, 32000}"
};

class MappedFile;

class GgufFile {
public:
    // Opens, maps and validates the whole file; throws dendro::Error naming the file and what is wrong.
    static std::unique_ptr<GgufFile> open(const std::string& path);
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }

    const std::vector<GgufKeyValue>& kvs() const { return kvs_; }
    const GgufValue* find(std::string_view key) const;

    // Typed getters: throw naming the key when it is missing or of an incompatible type. Integer getters
    // accept any integer width and check the value fits.
    uint64_t get_uint(std::string_view key) const;
    int64_t get_int(std::string_view key) const;
    double get_float(std::string_view key) const;  // FLOAT32 or FLOAT64
    bool get_bool(std::string_view key) const;
    const std::string& get_string(std::string_view key) const;
    const std::vector<std::string>& get_string_array(std::string_view key) const;
    std::vector<float> get_float_array(std::string_view key) const;
    std::vector<int64_t> get_int_array(std::string_view key) const;
    std::optional<uint64_t> get_uint_opt(std::string_view key) const;
    std::optional<double> get_float_opt(std::string_view key) const;
    std::optional<bool> get_bool_opt(std::string_view key) const;
    std::optional<std::string> get_string_opt(std::string_view key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const;

    // The whole mapped file and its tensor-data section (for content fingerprints): from the data offset to
    // the padded end of the last tensor (empty without tensors).
    std::span<const uint8_t> bytes() const;
    std::span<const uint8_t> data_section() const;

private:
    GgufFile() = default;
    std::string path_;
    uint32_t version_ = 0;
    size_t alignment_ = kGgufDefaultAlignment;
    std::vector<GgufKeyValue> kvs_;
    std::vector<GgufTensorInfo> tensors_;
    std::unique_ptr<MappedFile> map_;
    uint64_t data_offset_ = 0;
    friend class GgufParser;
};

// Writes a GGUF v3 file. Tensor data is produced on demand while writing, one tensor at a time, so a
// converter never holds two copies of a model. The file is written to PATH.tmp-XXXX and renamed on success.
class GgufWriter {
public:
    // Fills `out` with exactly ggml_row_size(type, ne[0]) * rows bytes for the tensor.
    using TensorProducer = std::function<void(std::vector<uint8_t>& out)>;

    explicit GgufWriter(size_t alignment = kGgufDefaultAlignment);

    // Keys are kept in insertion order; setting an existing key replaces its value in place.
    void set(std::string key, GgufValue value);
    void add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, TensorProducer producer);
    // Convenience: copies `bytes` (must match the size of the type and shape).
    void add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes);

    // Writes atomically. Keys, values, names, shapes and duplicates are validated as they are set/added
    // (set and add_tensor throw dendro::Error), the size each producer delivers while writing. `progress`,
    // when given, is called after each tensor with (tensors written, total).
    void write(const std::string& path, const std::function<void(size_t, size_t)>& progress = {}) const;

private:
    struct PendingTensor {
        std::string name;
        GgmlType type;
        std::vector<int64_t> ne;
        TensorProducer producer;
        uint64_t nbytes = 0;  // what the producer must deliver
    };
    size_t alignment_;
    std::vector<GgufKeyValue> kvs_;
    std::vector<PendingTensor> tensors_;
};

}  // namespace dendro
