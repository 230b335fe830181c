// Strict GGUF v3 parser over a memory mapping. Every read is bounds-checked against the mapping and every
// count is checked against the bytes left before anything is allocated, so a hostile file can only produce
// a dendro::Error. The checks follow ggml's gguf.cpp; tensor types are further limited to those Dendro
// computes with.
#include <bit>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_set>

#include "common/error.h"
#include "format/gguf.h"
#include "format/gguf_format_rules.h"
#include "format/mapped_file.h"

namespace dendro {
namespace {

// Smallest possible encodings, used to bound counts by the bytes that remain.
constexpr uint64_t kStringLengthBytes = sizeof(uint64_t);
constexpr uint64_t kMinKvBytes = kStringLengthBytes + 1 /*key*/ + sizeof(uint32_t) /*type*/ + 1 /*u8 value*/;
constexpr uint64_t kMinTensorInfoBytes =
    kStringLengthBytes + sizeof(uint32_t) /*n_dims*/ + sizeof(uint32_t) /*type*/ + sizeof(uint64_t) /*offset*/;

// Little-endian reads from the mapping; the host is little-endian like every platform GGUF targets.
static_assert(std::endian::native == std::endian::little, "GGUF reading assumes a little-endian host");

}  // namespace

class GgufParser {
public:
    GgufParser(GgufFile& file, std::span<const uint8_t> bytes) : file_(file), bytes_(bytes) {}

    void parse() {
        parse_header();
        parse_kvs();
        resolve_alignment();
        parse_tensor_infos();
        place_tensor_data();
    }

private:
    // --- errors -------------------------------------------------------------------------------------------
    template <typename... Parts>
    [[noreturn]] void fail_at(uint64_t offset, Parts&&... parts) const {
        fail(file_.path_, ": ", std::forward<Parts>(parts)..., " (", context_, context_.empty() ? "" : ", ",
             "at offset ", offset, ")");
    }

    // --- bounds-checked cursor ----------------------------------------------------------------------------
    uint64_t remaining() const { return bytes_.size() - pos_; }

    void require(uint64_t n, const char* what) const {
        if (n > remaining()) {
            fail_at(pos_, "file ends while reading ", what, ": needs ", n, " bytes, ", remaining(), " left");
        }
    }

    template <typename T>
    T read(const char* what) {
        require(sizeof(T), what);
        T value;
        std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return value;
    }

    std::string read_string(const char* what) {
        const uint64_t at = pos_;
        const auto length = read<uint64_t>(what);
        if (length > remaining()) {
            fail_at(at, what, " has length ", length, " but only ", remaining(), " bytes remain in the file");
        }
        std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(length));
        pos_ += length;
        return s;
    }

    // Fails unless `count` items of at least `min_item_bytes` each fit in the rest of the file.
    void check_count(uint64_t count, uint64_t min_item_bytes, uint64_t at, const char* what) const {
        if (count > remaining() / min_item_bytes) {
            fail_at(at, what, " is ", count, " but the ", remaining(), " bytes left in the file can hold at most ",
                    remaining() / min_item_bytes);
        }
    }

    // --- sections -----------------------------------------------------------------------------------------
    void parse_header() {
        const auto magic = read<uint32_t>("the magic number");
        if (magic != kGgufMagic) {
            char shown[sizeof(magic)];
            std::memcpy(shown, &magic, sizeof(magic));
            for (char& c : shown) {
                if (c < ' ' || c > '~') c = '?';
            }
            fail_at(0, "not a GGUF file: magic is '", std::string(shown, sizeof(magic)), "', expected 'GGUF'");
        }
        file_.version_ = read<uint32_t>("the version");
        if (file_.version_ != kGgufVersion) {
            fail_at(sizeof(uint32_t), "unsupported GGUF version ", file_.version_, ": only version ", kGgufVersion,
                    " is supported");
        }
        const uint64_t tensors_at = pos_;
        n_tensors_ = read<uint64_t>("the tensor count");
        const uint64_t kvs_at = pos_;
        n_kvs_ = read<uint64_t>("the key/value count");
        check_count(n_kvs_, kMinKvBytes, kvs_at, "key/value count");
        check_count(n_tensors_, kMinTensorInfoBytes, tensors_at, "tensor count");
    }

    template <typename Element>
    std::vector<Element> read_elements(uint64_t n, GgufType type) {
        std::vector<Element> values;
        values.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) values.push_back(read_scalar_as<Element>(type));
        return values;
    }

    // One fixed-size value of `type`, widened to the representation GgufValue uses for it.
    template <typename Held>
    Held read_scalar_as(GgufType type) {
        switch (type) {
            case GgufType::UINT8: return static_cast<Held>(read<uint8_t>("a u8 value"));
            case GgufType::INT8: return static_cast<Held>(read<int8_t>("an i8 value"));
            case GgufType::UINT16: return static_cast<Held>(read<uint16_t>("a u16 value"));
            case GgufType::INT16: return static_cast<Held>(read<int16_t>("an i16 value"));
            case GgufType::UINT32: return static_cast<Held>(read<uint32_t>("a u32 value"));
            case GgufType::INT32: return static_cast<Held>(read<int32_t>("an i32 value"));
            case GgufType::UINT64: return static_cast<Held>(read<uint64_t>("a u64 value"));
            case GgufType::INT64: return static_cast<Held>(read<int64_t>("an i64 value"));
            case GgufType::FLOAT32: return static_cast<Held>(read<float>("an f32 value"));
            case GgufType::FLOAT64: return static_cast<Held>(read<double>("an f64 value"));
            case GgufType::BOOL: return static_cast<Held>(read_bool());
            default: fail_at(pos_, "internal error: ", gguf_type_name(type), " is not a fixed-size type");
        }
    }

    // Any non-zero byte is true, as ggml reads it.
    bool read_bool() { return read<uint8_t>("a bool value") != 0; }

    GgufType read_value_type(const char* what) {
        const uint64_t at = pos_;
        const auto raw = read<uint32_t>(what);
        if (!gguf_rules::is_known_value_type(raw)) fail_at(at, "unknown value type ", raw);
        return static_cast<GgufType>(raw);
    }

    GgufValue read_scalar(GgufType type) {
        GgufValue value;
        value.type = type;
        if (type == GgufType::STRING) {
            value.data = read_string("a string value");
        } else if (type == GgufType::BOOL) {
            value.data = read_bool();
        } else if (type == GgufType::FLOAT32 || type == GgufType::FLOAT64) {
            value.data = read_scalar_as<double>(type);
        } else if (gguf_rules::is_signed_integer_type(type)) {
            value.data = read_scalar_as<int64_t>(type);
        } else {
            value.data = read_scalar_as<uint64_t>(type);
        }
        return value;
    }

    GgufValue read_array() {
        GgufValue value;
        value.type = GgufType::ARRAY;
        const uint64_t type_at = pos_;
        value.array_type = read_value_type("the array element type");
        if (value.array_type == GgufType::ARRAY) fail_at(type_at, "nested arrays are not supported");
        const uint64_t count_at = pos_;
        const auto n = read<uint64_t>("the array length");
        const GgufType type = value.array_type;
        if (type == GgufType::STRING) {
            check_count(n, kStringLengthBytes, count_at, "array length");
            std::vector<std::string> strings;
            strings.reserve(static_cast<size_t>(n));
            for (uint64_t i = 0; i < n; ++i) strings.push_back(read_string("an array string"));
            value.data = std::move(strings);
            return value;
        }
        check_count(n, gguf_rules::fixed_value_size(type), count_at, "array length");
        if (type == GgufType::BOOL) {
            value.data = read_elements<uint8_t>(n, type);
        } else if (type == GgufType::FLOAT32 || type == GgufType::FLOAT64) {
            value.data = read_elements<double>(n, type);
        } else if (gguf_rules::is_signed_integer_type(type)) {
            value.data = read_elements<int64_t>(n, type);
        } else {
            value.data = read_elements<uint64_t>(n, type);
        }
        return value;
    }

    void parse_kvs() {
        std::unordered_set<std::string> seen;
        for (uint64_t i = 0; i < n_kvs_; ++i) {
            const uint64_t key_at = pos_;
            context_ = concat("key #", i);
            std::string key = read_string("a key");
            if (key.empty()) fail_at(key_at, "empty key");
            context_ = concat("key '", key, "'");
            if (!seen.insert(key).second) fail_at(key_at, "duplicate key");
            const GgufType type = read_value_type("the value type");
            GgufValue value = type == GgufType::ARRAY ? read_array() : read_scalar(type);
            file_.kvs_.push_back({std::move(key), std::move(value)});
        }
        context_.clear();
    }

    void resolve_alignment() {
        const GgufValue* alignment = file_.find(gguf_rules::kAlignmentKey);
        if (alignment == nullptr) return;
        if (alignment->type != GgufType::UINT32) {
            fail(file_.path_, ": key '", gguf_rules::kAlignmentKey, "' must be of type u32 but is ",
                 gguf_type_name(alignment->type));
        }
        const uint64_t value = std::get<uint64_t>(alignment->data);
        if (!gguf_rules::is_valid_alignment(value)) {
            fail(file_.path_, ": key '", gguf_rules::kAlignmentKey, "' is ", value, ", not a power of two");
        }
        file_.alignment_ = static_cast<size_t>(value);
    }

    void parse_tensor_infos() {
        std::unordered_set<std::string> seen;
        for (uint64_t i = 0; i < n_tensors_; ++i) {
            const uint64_t info_at = pos_;
            context_ = concat("tensor #", i);
            GgufTensorInfo info;
            info.name = read_string("a tensor name");
            try {
                gguf_rules::check_tensor_name(info.name);
            } catch (const Error& e) {
                fail_at(info_at, e.what());
            }
            context_ = concat("tensor '", info.name, "'");
            if (!seen.insert(info.name).second) fail_at(info_at, "duplicate tensor name");

            const uint64_t dims_at = pos_;
            const auto n_dims = read<uint32_t>("the number of dimensions");
            if (n_dims > kGgufMaxTensorDims) {
                fail_at(dims_at, "tensor has ", n_dims, " dimensions, at most ", kGgufMaxTensorDims, " are allowed");
            }
            for (uint32_t d = 0; d < n_dims; ++d) info.ne.push_back(read<int64_t>("a dimension"));

            const uint64_t type_at = pos_;
            const auto raw_type = read<uint32_t>("the tensor type");
            try {
                info.nbytes = gguf_rules::tensor_nbytes(raw_type, info.ne);
            } catch (const Error& e) {
                fail_at(type_at, e.what());
            }
            const GgmlTypeTraits traits = *ggml_type_traits(raw_type);
            if (!traits.supported) {
                fail_at(type_at, "ggml type ", traits.name,
                        " is not supported by Dendro (supported: ", supported_ggml_type_names(), ")");
            }
            info.type = static_cast<GgmlType>(raw_type);
            info.offset = read<uint64_t>("the tensor data offset");
            file_.tensors_.push_back(std::move(info));
        }
        context_.clear();
    }

    void place_tensor_data() {
        const uint64_t header_end = pos_;
        // As ggml does: the data section starts at the header end padded to the alignment (only when there
        // are tensors), and tensors follow in info order, each at the padded end of the one before.
        uint64_t data_offset = header_end;
        if (n_tensors_ > 0) {
            data_offset = gguf_rules::pad_to_alignment(header_end, file_.alignment_);
            if (data_offset > bytes_.size()) {
                fail_at(header_end, "file ends before the tensor data section (needs ", data_offset, " bytes, has ",
                        bytes_.size(), ")");
            }
        }
        file_.data_offset_ = data_offset;
        uint64_t expected_offset = 0;
        for (GgufTensorInfo& info : file_.tensors_) {
            context_ = concat("tensor '", info.name, "'");
            if (info.offset != expected_offset) {
                fail_at(data_offset + info.offset, "tensor data offset is ", info.offset, ", expected ",
                        expected_offset, " (the padded end of the previous tensor, alignment ", file_.alignment_, ")");
            }
            const uint64_t available = bytes_.size() - data_offset;
            if (info.offset > available || info.nbytes > available - info.offset) {
                fail_at(data_offset + info.offset, "tensor data (", info.nbytes, " bytes at data offset ", info.offset,
                        ") extends beyond the end of the file (", bytes_.size(), " bytes)");
            }
            info.data = bytes_.data() + data_offset + info.offset;
            expected_offset = gguf_rules::pad_to_alignment(info.offset + info.nbytes, file_.alignment_);
        }
        context_.clear();
    }

    GgufFile& file_;
    std::span<const uint8_t> bytes_;
    uint64_t pos_ = 0;
    uint64_t n_tensors_ = 0;
    uint64_t n_kvs_ = 0;
    std::string context_;  // the key or tensor being read, for messages
};

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->path_ = path;
    file->map_ = std::make_unique<MappedFile>(path);
    GgufParser(*file, file->map_->bytes()).parse();
    return file;
}

GgufFile::~GgufFile() = default;

}  // namespace dendro
