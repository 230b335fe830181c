#include "gguf_bytes.h"

namespace dendro::test {

GgufBytes& GgufBytes::str(std::string_view s) {
    u64(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
}

GgufBytes& GgufBytes::zeros(size_t n) {
    bytes_.insert(bytes_.end(), n, 0);
    return *this;
}

GgufBytes& GgufBytes::pad_to(size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_.push_back(0);
    return *this;
}

GgufBytes& GgufBytes::header(uint64_t n_tensors, uint64_t n_kv, uint32_t version) {
    return u32(kGgufMagic).u32(version).u64(n_tensors).u64(n_kv);
}

GgufBytes& GgufBytes::kv_u32(std::string_view key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(GgufType::UINT32)).u32(v);
}

GgufBytes& GgufBytes::kv_string(std::string_view key, std::string_view v) {
    return str(key).u32(static_cast<uint32_t>(GgufType::STRING)).str(v);
}

GgufBytes& GgufBytes::tensor_info(std::string_view name, const std::vector<int64_t>& ne, uint32_t type,
                                  uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (const int64_t d : ne) i64(d);
    return u32(type).u64(offset);
}

}  // namespace dendro::test
