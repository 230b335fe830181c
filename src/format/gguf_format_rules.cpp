// GGUF format rules shared by the reader and the writer.
#include "format/gguf_format_rules.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "common/error.h"

namespace dendro::gguf_rules {
namespace {

constexpr uint32_t kLastValueType = static_cast<uint32_t>(GgufType::FLOAT64);

struct IntegerRange {
    int64_t min;
    uint64_t max;
};

IntegerRange integer_range(GgufType type) {
    switch (type) {
        case GgufType::UINT8: return {0, std::numeric_limits<uint8_t>::max()};
        case GgufType::INT8: return {std::numeric_limits<int8_t>::min(), std::numeric_limits<int8_t>::max()};
        case GgufType::UINT16: return {0, std::numeric_limits<uint16_t>::max()};
        case GgufType::INT16: return {std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max()};
        case GgufType::UINT32: return {0, std::numeric_limits<uint32_t>::max()};
        case GgufType::INT32: return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
        case GgufType::UINT64: return {0, std::numeric_limits<uint64_t>::max()};
        case GgufType::INT64:
            return {std::numeric_limits<int64_t>::min(), static_cast<uint64_t>(std::numeric_limits<int64_t>::max())};
        default: fail("not an integer type");
    }
}

void check_integer(std::string_view subject, GgufType type, int64_t v) {
    const IntegerRange range = integer_range(type);
    if (v < range.min || (v > 0 && static_cast<uint64_t>(v) > range.max)) {
        fail(subject, ": value ", v, " does not fit type ", gguf_type_name(type));
    }
}

void check_integer(std::string_view subject, GgufType type, uint64_t v) {
    if (v > integer_range(type).max) fail(subject, ": value ", v, " does not fit type ", gguf_type_name(type));
}

// Whether `value` holds a Scalar (or, for an array, a std::vector<Element>).
template <typename Scalar, typename Element>
bool holds_expected(const GgufValue& value, bool array) {
    return array ? std::holds_alternative<std::vector<Element>>(value.data)
                 : std::holds_alternative<Scalar>(value.data);
}

bool holds_representation(const GgufValue& value, GgufType type, bool array) {
    if (is_integer_type(type)) {
        return is_signed_integer_type(type) ? holds_expected<int64_t, int64_t>(value, array)
                                            : holds_expected<uint64_t, uint64_t>(value, array);
    }
    switch (type) {
        case GgufType::FLOAT32:
        case GgufType::FLOAT64: return holds_expected<double, double>(value, array);
        case GgufType::BOOL: return holds_expected<bool, uint8_t>(value, array);
        case GgufType::STRING: return holds_expected<std::string, std::string>(value, array);
        default: return false;
    }
}

}  // namespace

size_t fixed_value_size(GgufType type) {
    switch (type) {
        case GgufType::UINT8:
        case GgufType::INT8:
        case GgufType::BOOL: return 1;
        case GgufType::UINT16:
        case GgufType::INT16: return 2;
        case GgufType::UINT32:
        case GgufType::INT32:
        case GgufType::FLOAT32: return 4;
        case GgufType::UINT64:
        case GgufType::INT64:
        case GgufType::FLOAT64: return 8;
        case GgufType::STRING:
        case GgufType::ARRAY: return 0;
    }
    return 0;
}

bool is_known_value_type(uint32_t raw_type) { return raw_type <= kLastValueType; }

bool is_integer_type(GgufType type) {
    switch (type) {
        case GgufType::UINT8:
        case GgufType::INT8:
        case GgufType::UINT16:
        case GgufType::INT16:
        case GgufType::UINT32:
        case GgufType::INT32:
        case GgufType::UINT64:
        case GgufType::INT64: return true;
        default: return false;
    }
}

bool is_signed_integer_type(GgufType type) {
    return type == GgufType::INT8 || type == GgufType::INT16 || type == GgufType::INT32 || type == GgufType::INT64;
}

void check_value(std::string_view subject, const GgufValue& value) {
    if (!is_known_value_type(static_cast<uint32_t>(value.type))) {
        fail(subject, ": unknown value type ", static_cast<uint32_t>(value.type));
    }
    const bool array = value.type == GgufType::ARRAY;
    const GgufType element_type = array ? value.array_type : value.type;
    if (array && element_type == GgufType::ARRAY) fail(subject, ": nested arrays are not supported");
    if (array && !is_known_value_type(static_cast<uint32_t>(element_type))) {
        fail(subject, ": unknown array element type ", static_cast<uint32_t>(element_type));
    }
    if (!holds_representation(value, element_type, array)) {
        fail(subject, ": value does not hold data of its declared type ",
             array ? concat("array of ", gguf_type_name(element_type)) : std::string(gguf_type_name(element_type)));
    }
    if (!is_integer_type(element_type)) return;
    std::visit(
        [&](const auto& held) {
            using Held = std::decay_t<decltype(held)>;
            if constexpr (std::is_same_v<Held, int64_t> || std::is_same_v<Held, uint64_t>) {
                check_integer(subject, element_type, held);
            } else if constexpr (std::is_same_v<Held, std::vector<int64_t>> ||
                                 std::is_same_v<Held, std::vector<uint64_t>>) {
                for (const auto v : held) check_integer(subject, element_type, v);
            }
        },
        value.data);
}

bool is_valid_alignment(uint64_t alignment) { return alignment != 0 && (alignment & (alignment - 1)) == 0; }

uint64_t pad_to_alignment(uint64_t offset, uint64_t alignment) {
    const uint64_t remainder = offset % alignment;
    if (remainder == 0) return offset;
    const uint64_t padding = alignment - remainder;
    if (offset > std::numeric_limits<uint64_t>::max() - padding) fail("offset ", offset, " overflows when padded");
    return offset + padding;
}

void check_tensor_name(std::string_view name) {
    if (name.size() > kGgufMaxNameLength) {
        fail("tensor name '", name.substr(0, kGgufMaxNameLength), "...' is ", name.size(), " bytes, longer than the ",
             kGgufMaxNameLength, " bytes ggml allows");
    }
}

uint64_t tensor_nbytes(uint32_t raw_type, std::span<const int64_t> ne) {
    if (ne.size() > kGgufMaxTensorDims) {
        fail(ne.size(), " dimensions, at most ", kGgufMaxTensorDims, " are allowed");
    }
    const auto traits = ggml_type_traits(raw_type);
    if (!traits) fail("unknown ggml type id ", raw_type);
    uint64_t elements = 1;
    for (size_t i = 0; i < ne.size(); ++i) {
        if (ne[i] < 0) fail("dimension ", i, " is negative (", ne[i], ")");
    }
    // Like ggml, a tensor with a zero dimension is empty whatever its other dimensions are.
    const bool empty = std::find(ne.begin(), ne.end(), 0) != ne.end();
    for (size_t i = 0; i < ne.size() && !empty; ++i) {
        const auto dim = static_cast<uint64_t>(ne[i]);
        if (elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim) {
            fail("too many elements: the product of the dimensions overflows int64");
        }
        elements *= dim;
    }
    if (empty) elements = 0;
    const int64_t row_length = ne.empty() ? 1 : ne[0];
    if (row_length % traits->block_size != 0) {
        fail("rows of ", row_length, " elements are not a multiple of the ", traits->name, " block size ",
             traits->block_size);
    }
    const uint64_t blocks = elements / static_cast<uint64_t>(traits->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / traits->type_size) {
        fail("tensor too large: its size in bytes overflows");
    }
    return blocks * traits->type_size;
}

}  // namespace dendro::gguf_rules
