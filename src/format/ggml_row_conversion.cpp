// Row conversion between fp32 and the storage types: every supported type is read (the legacy quants and
// k-quants through ggml_quant_blocks.h); F32, F16, BF16 and the types of ggml_quantize.h are written.
#include <cstring>
#include <string>

#include "common/error.h"
#include "format/ggml_quant_blocks.h"
#include "format/ggml_quantize.h"
#include "format/ggml_types.h"

namespace dendro {
namespace {

void check_row_length(GgmlType type, int64_t n) {
    // ggml_row_size throws for unknown types and lengths that are not whole blocks.
    (void)ggml_row_size(type, n);
}

[[noreturn]] void fail_unsupported(GgmlType type, const char* direction, const std::string& supported) {
    fail("cannot ", direction, " rows of ggml type ", ggml_type_name(type), ": supported types are ", supported);
}

}  // namespace

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
    check_row_length(type, n);
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
            return;
        case GgmlType::F16: {
            const auto* in = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(in[i]);
            return;
        }
        case GgmlType::BF16: {
            const auto* in = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(in[i]);
            return;
        }
        case GgmlType::Q8_0: {
            const auto* blocks = static_cast<const BlockQ8_0*>(src);
            for (int64_t b = 0; b < n / kQ8_0BlockSize; ++b) {
                const float d = fp16_to_fp32(blocks[b].d);
                float* out = dst + b * kQ8_0BlockSize;
                for (int64_t j = 0; j < kQ8_0BlockSize; ++j) out[j] = static_cast<float>(blocks[b].qs[j]) * d;
            }
            return;
        }
        case GgmlType::Q4_0: return dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / kLegacyQuantBlockSize);
        case GgmlType::Q4_1: return dequantize_q4_1(static_cast<const BlockQ4_1*>(src), dst, n / kLegacyQuantBlockSize);
        case GgmlType::Q5_0: return dequantize_q5_0(static_cast<const BlockQ5_0*>(src), dst, n / kLegacyQuantBlockSize);
        case GgmlType::Q5_1: return dequantize_q5_1(static_cast<const BlockQ5_1*>(src), dst, n / kLegacyQuantBlockSize);
        case GgmlType::IQ4_NL:
            return dequantize_iq4_nl(static_cast<const BlockIQ4_NL*>(src), dst, n / kLegacyQuantBlockSize);
        case GgmlType::Q2_K: return dequantize_q2_k(static_cast<const BlockQ2_K*>(src), dst, n / kKQuantBlockSize);
        case GgmlType::Q3_K: return dequantize_q3_k(static_cast<const BlockQ3_K*>(src), dst, n / kKQuantBlockSize);
        case GgmlType::Q4_K: return dequantize_q4_k(static_cast<const BlockQ4_K*>(src), dst, n / kKQuantBlockSize);
        case GgmlType::Q5_K: return dequantize_q5_k(static_cast<const BlockQ5_K*>(src), dst, n / kKQuantBlockSize);
        case GgmlType::Q6_K: return dequantize_q6_k(static_cast<const BlockQ6_K*>(src), dst, n / kKQuantBlockSize);
        default:
            fail_unsupported(type, "dequantize", supported_ggml_type_names());
    }
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
    check_row_length(type, n);
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
            return;
        case GgmlType::F16: {
            auto* out = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(src[i]);
            return;
        }
        case GgmlType::BF16: {
            auto* out = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(src[i]);
            return;
        }
        case GgmlType::Q8_0: return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), n / kQ8_0BlockSize);
        case GgmlType::Q4_0: return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), n / kLegacyQuantBlockSize);
        case GgmlType::Q4_1: return quantize_q4_1(src, static_cast<BlockQ4_1*>(dst), n / kLegacyQuantBlockSize);
        case GgmlType::Q5_0: return quantize_q5_0(src, static_cast<BlockQ5_0*>(dst), n / kLegacyQuantBlockSize);
        case GgmlType::Q5_1: return quantize_q5_1(src, static_cast<BlockQ5_1*>(dst), n / kLegacyQuantBlockSize);
        case GgmlType::Q4_K: return quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), n / kKQuantBlockSize);
        case GgmlType::Q5_K: return quantize_q5_k(src, static_cast<BlockQ5_K*>(dst), n / kKQuantBlockSize);
        case GgmlType::Q6_K: return quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), n / kKQuantBlockSize);
        default:
            fail_unsupported(type, "quantize", "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K and q6_K");
    }
}

}  // namespace dendro
