#include "safetensors_builder.h"

#include <cstring>

namespace dendro::test {

SafetensorsBuilder& SafetensorsBuilder::add(const std::string& name, const std::string& dtype,
                                            const std::vector<int64_t>& shape, std::span<const uint8_t> bytes) {
    const uint64_t begin = data_.size();
    data_.insert(data_.end(), bytes.begin(), bytes.end());
    header_[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, static_cast<uint64_t>(data_.size())}}};
    return *this;
}

SafetensorsBuilder& SafetensorsBuilder::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                                const std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return add(name, "F32", shape, bytes);
}

std::vector<uint8_t> SafetensorsBuilder::bytes() const {
    const std::string header = header_.dump();
    std::vector<uint8_t> out;
    uint64_t length = header.size();
    for (size_t i = 0; i < sizeof(length); ++i) out.push_back(static_cast<uint8_t>(length >> (8 * i)));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data_.begin(), data_.end());
    return out;
}

}  // namespace dendro::test
