// Builds GGUF files byte by byte (little-endian), for tests that need files the writer refuses to make:
// truncated, misaligned, overflowing or otherwise malformed.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "format/gguf.h"

namespace dendro::test {

class GgufBytes {
public:
    GgufBytes& u8(uint8_t v) { return put(v); }
    GgufBytes& u32(uint32_t v) { return put(v); }
    GgufBytes& i32(int32_t v) { return put(v); }
    GgufBytes& u64(uint64_t v) { return put(v); }
    GgufBytes& i64(int64_t v) { return put(v); }
    GgufBytes& f32(float v) { return put(v); }
    GgufBytes& str(std::string_view s);
    GgufBytes& zeros(size_t n);
    GgufBytes& pad_to(size_t alignment);

    // Magic, version, tensor count, key/value count.
    GgufBytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = kGgufVersion);
    GgufBytes& kv_u32(std::string_view key, uint32_t v);
    GgufBytes& kv_string(std::string_view key, std::string_view v);
    // Name, n_dims, each dimension, type id, data offset.
    GgufBytes& tensor_info(std::string_view name, const std::vector<int64_t>& ne, uint32_t type, uint64_t offset);

    size_t size() const { return bytes_.size(); }
    const std::vector<uint8_t>& bytes() const { return bytes_; }

private:
    template <typename T>
    GgufBytes& put(T v) {
        const auto* raw = reinterpret_cast<const uint8_t*>(&v);
        bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
        return *this;
    }
    std::vector<uint8_t> bytes_;
};

}  // namespace dendro::test
