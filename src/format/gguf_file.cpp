// Lookups and typed getters of an opened GGUF file.
#include <algorithm>
#include <limits>
#include <type_traits>

#include "common/error.h"
#include "format/gguf.h"
#include "format/gguf_format_rules.h"
#include "format/mapped_file.h"

namespace dendro {
namespace {

std::string describe_type(const GgufValue& value) {
    return value.type == GgufType::ARRAY ? concat("array of ", gguf_type_name(value.array_type))
                                         : std::string(gguf_type_name(value.type));
}

[[noreturn]] void fail_type(const std::string& path, std::string_view key, const GgufValue& value,
                            const char* expected) {
    fail(path, ": key '", key, "' has type ", describe_type(value), ", expected ", expected);
}

bool is_real_type(GgufType type) { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

}  // namespace

const GgufValue* GgufFile::find(std::string_view key) const {
    for (const GgufKeyValue& kv : kvs_) {
        if (kv.key == key) return &kv.value;
    }
    return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    for (const GgufTensorInfo& info : tensors_) {
        if (info.name == name) return &info;
    }
    return nullptr;
}

std::span<const uint8_t> GgufFile::bytes() const { return map_->bytes(); }

std::span<const uint8_t> GgufFile::data_section() const {
    const std::span<const uint8_t> all = map_->bytes();
    if (tensors_.empty()) return all.subspan(data_offset_, 0);
    // Up to the padded end of the last tensor; the file may omit that final padding.
    const GgufTensorInfo& last = tensors_.back();
    const uint64_t end = gguf_rules::pad_to_alignment(data_offset_ + last.offset + last.nbytes, alignment_);
    return all.subspan(data_offset_, std::min<uint64_t>(end, all.size()) - data_offset_);
}

std::optional<uint64_t> GgufFile::get_uint_opt(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!gguf_rules::is_integer_type(value->type)) fail_type(path_, key, *value, "an integer");
    if (const auto* unsigned_value = std::get_if<uint64_t>(&value->data)) return *unsigned_value;
    const int64_t signed_value = std::get<int64_t>(value->data);
    if (signed_value < 0) fail(path_, ": key '", key, "' is ", signed_value, ", expected a non-negative integer");
    return static_cast<uint64_t>(signed_value);
}

uint64_t GgufFile::get_uint(std::string_view key) const {
    const auto value = get_uint_opt(key);
    if (!value) fail(path_, ": missing key '", key, "'");
    return *value;
}

int64_t GgufFile::get_int(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) fail(path_, ": missing key '", key, "'");
    if (!gguf_rules::is_integer_type(value->type)) fail_type(path_, key, *value, "an integer");
    if (const auto* signed_value = std::get_if<int64_t>(&value->data)) return *signed_value;
    const uint64_t unsigned_value = std::get<uint64_t>(value->data);
    if (unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(path_, ": key '", key, "' is ", unsigned_value, ", too large for a signed 64-bit integer");
    }
    return static_cast<int64_t>(unsigned_value);
}

std::optional<double> GgufFile::get_float_opt(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!is_real_type(value->type)) fail_type(path_, key, *value, "f32 or f64");
    return std::get<double>(value->data);
}

double GgufFile::get_float(std::string_view key) const {
    const auto value = get_float_opt(key);
    if (!value) fail(path_, ": missing key '", key, "'");
    return *value;
}

std::optional<bool> GgufFile::get_bool_opt(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (value->type != GgufType::BOOL) fail_type(path_, key, *value, "bool");
    return std::get<bool>(value->data);
}

bool GgufFile::get_bool(std::string_view key) const {
    const auto value = get_bool_opt(key);
    if (!value) fail(path_, ": missing key '", key, "'");
    return *value;
}

const std::string& GgufFile::get_string(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) fail(path_, ": missing key '", key, "'");
    if (value->type != GgufType::STRING) fail_type(path_, key, *value, "str");
    return std::get<std::string>(value->data);
}

std::optional<std::string> GgufFile::get_string_opt(std::string_view key) const {
    if (find(key) == nullptr) return std::nullopt;
    return get_string(key);
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) fail(path_, ": missing key '", key, "'");
    if (value->type != GgufType::ARRAY || value->array_type != GgufType::STRING) {
        fail_type(path_, key, *value, "array of str");
    }
    return std::get<std::vector<std::string>>(value->data);
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) fail(path_, ": missing key '", key, "'");
    if (value->type != GgufType::ARRAY || !is_real_type(value->array_type)) {
        fail_type(path_, key, *value, "array of f32 or f64");
    }
    const auto& reals = std::get<std::vector<double>>(value->data);
    return std::vector<float>(reals.begin(), reals.end());
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) fail(path_, ": missing key '", key, "'");
    if (value->type != GgufType::ARRAY || !gguf_rules::is_integer_type(value->array_type)) {
        fail_type(path_, key, *value, "array of integers");
    }
    if (const auto* signed_values = std::get_if<std::vector<int64_t>>(&value->data)) return *signed_values;
    const auto& unsigned_values = std::get<std::vector<uint64_t>>(value->data);
    std::vector<int64_t> result;
    result.reserve(unsigned_values.size());
    for (size_t i = 0; i < unsigned_values.size(); ++i) {
        if (unsigned_values[i] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            fail(path_, ": key '", key, "' element ", i, " is ", unsigned_values[i],
                 ", too large for a signed 64-bit integer");
        }
        result.push_back(static_cast<int64_t>(unsigned_values[i]));
    }
    return result;
}

}  // namespace dendro
