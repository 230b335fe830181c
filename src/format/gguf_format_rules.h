// Rules of the GGUF format shared by the reader and the writer (private to the library): value/type agreement,
// tensor names and shapes, alignment and padding. Errors are thrown as dendro::Error without the file name;
// callers add it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "format/gguf.h"

namespace dendro::gguf_rules {

inline constexpr std::string_view kAlignmentKey = "general.alignment";

// Bytes each element of a fixed-size GGUF value type takes in the file; 0 for STRING and ARRAY.
size_t fixed_value_size(GgufType type);
bool is_known_value_type(uint32_t raw_type);
bool is_integer_type(GgufType type);
bool is_signed_integer_type(GgufType type);

// Checks that the C++ representation of `value` agrees with its declared type (and element type), that
// integers fit their declared width and that arrays are not nested. Messages start with `subject`
// (e.g. "key 'general.name'").
void check_value(std::string_view subject, const GgufValue& value);

bool is_valid_alignment(uint64_t alignment);
// `offset` rounded up to a multiple of `alignment` (a power of two); throws on overflow.
uint64_t pad_to_alignment(uint64_t offset, uint64_t alignment);

// Name length as ggml limits it (shorter than GGML_MAX_NAME, 64 bytes including the terminator).
void check_tensor_name(std::string_view name);
// Data bytes of a tensor of ggml type `raw_type` and dimensions `ne` (ggml order), checking what ggml checks:
// a known type, 0..4 dimensions each >= 0, rows a whole number of blocks, and no overflow of the element
// count or byte size. Messages describe the shape; callers name the tensor.
uint64_t tensor_nbytes(uint32_t raw_type, std::span<const int64_t> ne);

}  // namespace dendro::gguf_rules
