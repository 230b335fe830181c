// ggml tensor element types as GGUF stores them, their block geometry, and row conversion to and from fp32.
// Numbering and block layouts follow ggml exactly so files interoperate with llama.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace dendro {

enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ4_NL = 20,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
};

// Q8_0: blocks of 32 values, one fp16 scale d then 32 int8 quants; value = d * q.
inline constexpr int64_t kQ8_0BlockSize = 32;
struct BlockQ8_0 {
    uint16_t d;  // fp16 bits
    int8_t qs[kQ8_0BlockSize];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct GgmlTypeTraits {
    const char* name;
    int64_t block_size;  // elements per block
    size_t type_size;    // bytes per block
    bool supported;      // Dendro can compute with it (floats, Q8_0, legacy quants, Q2_K..Q6_K)
};

// Traits of a raw type id read from a file; nullopt for ids ggml does not define.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw_type);
std::string ggml_type_name(GgmlType type);
// Names of the supported types, comma-separated, for error messages.
std::string supported_ggml_type_names();
// Bytes of a row of n elements; throws dendro::Error when n is not a multiple of the block size.
size_t ggml_row_size(GgmlType type, int64_t n);

float fp16_to_fp32(uint16_t bits);
uint16_t fp32_to_fp16(float value);  // round to nearest even, as ggml/IEEE
float bf16_to_fp32(uint16_t bits);
uint16_t fp32_to_bf16(float value);  // round to nearest even; NaN stays NaN (as ggml)

// Row conversion; n must be a multiple of the type's block size. dequantize_row reads every supported type,
// quantize_row writes F32, F16, BF16 and the types of format/ggml_quantize.h (can_quantize_to).
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace dendro
