// GGUF metadata values: constructors for each type, array sizes and a readable rendering.
#include <charconv>
#include <type_traits>

#include "common/error.h"
#include "format/gguf.h"
#include "format/gguf_format_rules.h"

namespace dendro {
namespace {

template <typename Held>
GgufValue scalar(GgufType type, Held held) {
    GgufValue value;
    value.type = type;
    value.data.emplace<Held>(std::move(held));
    return value;
}

// Shortest decimal that reads back as the same float (or double).
template <typename Real>
std::string format_real(Real v) {
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
    return std::string(buffer, result.ptr);
}

std::string format_real(double v, GgufType type) {
    return type == GgufType::FLOAT32 ? format_real(static_cast<float>(v)) : format_real(v);
}

// Quoted, with control and non-ASCII-printable bytes escaped, cut after max_bytes.
std::string quote(const std::string& s, size_t max_bytes) {
    constexpr unsigned char kFirstPrintable = 0x20;
    constexpr unsigned char kDelete = 0x7f;
    std::string out = "\"";
    const size_t shown = std::min(s.size(), max_bytes);
    for (size_t i = 0; i < shown; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < kFirstPrintable || c == kDelete) {
            constexpr char kHex[] = "0123456789abcdef";
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        } else {
            out += static_cast<char>(c);  // UTF-8 bytes pass through
        }
    }
    out += '"';
    if (shown < s.size()) out += concat("... (", s.size(), " bytes)");
    return out;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
    switch (type) {
        case GgufType::UINT8: return "u8";
        case GgufType::INT8: return "i8";
        case GgufType::UINT16: return "u16";
        case GgufType::INT16: return "i16";
        case GgufType::UINT32: return "u32";
        case GgufType::INT32: return "i32";
        case GgufType::FLOAT32: return "f32";
        case GgufType::BOOL: return "bool";
        case GgufType::STRING: return "str";
        case GgufType::ARRAY: return "arr";
        case GgufType::UINT64: return "u64";
        case GgufType::INT64: return "i64";
        case GgufType::FLOAT64: return "f64";
    }
    return "unknown";
}

GgufValue GgufValue::u8(uint8_t v) { return scalar(GgufType::UINT8, uint64_t{v}); }
GgufValue GgufValue::i8(int8_t v) { return scalar(GgufType::INT8, int64_t{v}); }
GgufValue GgufValue::u16(uint16_t v) { return scalar(GgufType::UINT16, uint64_t{v}); }
GgufValue GgufValue::i16(int16_t v) { return scalar(GgufType::INT16, int64_t{v}); }
GgufValue GgufValue::u32(uint32_t v) { return scalar(GgufType::UINT32, uint64_t{v}); }
GgufValue GgufValue::i32(int32_t v) { return scalar(GgufType::INT32, int64_t{v}); }
GgufValue GgufValue::u64(uint64_t v) { return scalar(GgufType::UINT64, v); }
GgufValue GgufValue::i64(int64_t v) { return scalar(GgufType::INT64, v); }
GgufValue GgufValue::f32(float v) { return scalar(GgufType::FLOAT32, double{v}); }
GgufValue GgufValue::f64(double v) { return scalar(GgufType::FLOAT64, v); }
GgufValue GgufValue::boolean(bool v) { return scalar(GgufType::BOOL, v); }
GgufValue GgufValue::string(std::string v) { return scalar(GgufType::STRING, std::move(v)); }

GgufValue GgufValue::string_array(std::vector<std::string> v) { return array(GgufType::STRING, std::move(v)); }

GgufValue GgufValue::f32_array(const std::vector<float>& v) {
    return array(GgufType::FLOAT32, std::vector<double>(v.begin(), v.end()));
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
    return array(GgufType::INT32, std::vector<int64_t>(v.begin(), v.end()));
}

GgufValue GgufValue::array(GgufType element_type, decltype(data) values) {
    GgufValue value;
    value.type = GgufType::ARRAY;
    value.array_type = element_type;
    value.data = std::move(values);
    gguf_rules::check_value("GGUF array value", value);
    return value;
}

size_t GgufValue::array_size() const {
    if (type != GgufType::ARRAY) return 0;
    return std::visit(
        [](const auto& held) -> size_t {
            using Held = std::decay_t<decltype(held)>;
            if constexpr (std::is_same_v<Held, std::string>) {
                return 0;
            } else if constexpr (requires { held.size(); }) {
                return held.size();
            } else {
                return 0;
            }
        },
        data);
}

std::string gguf_value_to_string(const GgufValue& value, size_t max_array_elements, size_t max_string_bytes) {
    const bool array = value.type == GgufType::ARRAY;
    const GgufType element_type = array ? value.array_type : value.type;
    auto element = [&](const auto& v) -> std::string {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string>) {
            return quote(v, max_string_bytes);
        } else if constexpr (std::is_same_v<V, double>) {
            return format_real(v, element_type);
        } else if constexpr (std::is_same_v<V, bool>) {
            return v ? "true" : "false";
        } else if constexpr (std::is_same_v<V, uint8_t>) {  // bool array element
            return v ? "true" : "false";
        } else {
            return concat(v);
        }
    };
    return std::visit(
        [&](const auto& held) -> std::string {
            using Held = std::decay_t<decltype(held)>;
            if constexpr (std::is_same_v<Held, std::monostate>) {
                return "(empty)";
            } else if constexpr (requires { typename Held::value_type; } && !std::is_same_v<Held, std::string>) {
                std::string out = concat("array<", gguf_type_name(element_type), ">[", held.size(), "] {");
                const size_t shown = std::min(held.size(), max_array_elements);
                for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + element(held[i]);
                if (shown < held.size()) out += shown ? ", ..." : "...";
                return out + "}";
            } else {
                return element(held);
            }
        },
        value.data);
}

}  // namespace dendro
