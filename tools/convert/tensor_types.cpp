// Out types and the per-tensor type rules (see tensor_types.h).
#include "tensor_types.h"

#include "common/error.h"

namespace dendro {
namespace {

struct OutTypeEntry {
    OutType type;
    const char* name;
    uint32_t file_type;    // llama_ftype (llama.h)
    GgmlType default_type; // of the quantized tensors
};

constexpr OutTypeEntry kOutTypes[] = {
    {OutType::F32, "f32", 0, GgmlType::F32},          {OutType::F16, "f16", 1, GgmlType::F16},
    {OutType::BF16, "bf16", 32, GgmlType::BF16},      {OutType::Q8_0, "q8_0", 7, GgmlType::Q8_0},
    {OutType::Q4_0, "q4_0", 2, GgmlType::Q4_0},       {OutType::Q4_K_M, "q4_k_m", 15, GgmlType::Q4_K},
    {OutType::Q5_K_M, "q5_k_m", 17, GgmlType::Q5_K},  {OutType::Q6_K, "q6_k", 18, GgmlType::Q6_K},
};

const OutTypeEntry& entry(OutType type) {
    for (const OutTypeEntry& e : kOutTypes) {
        if (e.type == type) return e;
    }
    fail("invalid OutType ", static_cast<int>(type));
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Dimensions as ggml counts them: trailing 1s do not count.
size_t n_dims(const std::vector<int64_t>& ne) {
    size_t n = ne.size();
    while (n > 1 && ne[n - 1] == 1) --n;
    return n;
}

bool is_quantized(const std::string& name, const std::vector<int64_t>& ne) {
    return ends_with(name, "weight") && n_dims(ne) >= 2 && name.find("_norm.weight") == std::string::npos &&
           name.find("ssm_conv1d") == std::string::npos;
}

bool whole_blocks(GgmlType type, int64_t row_length) {
    return row_length % ggml_type_traits(static_cast<uint32_t>(type))->block_size == 0;
}

// llama.cpp's fallback for rows that are not whole blocks of `type`.
GgmlType fallback(GgmlType type, int64_t row_length) {
    if (whole_blocks(type, row_length)) return type;
    GgmlType next = GgmlType::F16;
    switch (type) {
        case GgmlType::Q4_K: next = GgmlType::Q5_0; break;
        case GgmlType::Q5_K: next = GgmlType::Q5_1; break;
        case GgmlType::Q6_K: next = GgmlType::Q8_0; break;
        default: break;
    }
    return whole_blocks(next, row_length) ? next : GgmlType::F16;
}

bool is_float(GgmlType type) { return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16; }

}  // namespace

OutType parse_out_type(const std::string& text, const std::string& what) {
    for (const OutTypeEntry& e : kOutTypes) {
        if (text == e.name) return e.type;
    }
    fail("unknown ", what, " '", text, "' (expected ", out_type_names(), ")");
}

const char* out_type_name(OutType type) { return entry(type).name; }

std::string out_type_names() {
    std::string names;
    for (const OutTypeEntry& e : kOutTypes) names += concat(names.empty() ? "" : ", ", e.name);
    return names;
}

uint32_t out_type_file_type(OutType type) { return entry(type).file_type; }

GgmlType tensor_storage_type(const std::string& name, const std::vector<int64_t>& ne, OutType out_type,
                             bool output_tied) {
    if (!is_quantized(name, ne)) return GgmlType::F32;
    const GgmlType default_type = entry(out_type).default_type;
    if (is_float(default_type)) return default_type;
    const int64_t row_length = ne[0];
    GgmlType type = default_type;
    const bool output_matrix = name == "output.weight" || (output_tied && name == "token_embd.weight");
    if (output_matrix) {
        if (!whole_blocks(default_type, row_length)) {
            type = GgmlType::Q8_0;
        } else if (default_type != GgmlType::Q8_0) {
            type = GgmlType::Q6_K;
        }
    }
    return fallback(type, row_length);
}

}  // namespace dendro
