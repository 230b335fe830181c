// Builds safetensors files for tests: tensors appended one after another, with the JSON header exposed so a
// test can corrupt it (wrong dtype, shape or offsets) before the bytes are produced.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dendro::test {

class SafetensorsBuilder {
public:
    // Appends raw bytes for a tensor and records dtype, shape and data_offsets in the header.
    SafetensorsBuilder& add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                            std::span<const uint8_t> bytes);
    SafetensorsBuilder& add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<float>& values);

    nlohmann::json& header() { return header_; }
    std::vector<uint8_t>& data() { return data_; }
    // The 8-byte little-endian header length, the header JSON, then the data.
    std::vector<uint8_t> bytes() const;

private:
    nlohmann::json header_ = nlohmann::json::object();
    std::vector<uint8_t> data_;
};

}  // namespace dendro::test
