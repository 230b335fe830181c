// JSON files as HF tooling writes them. Python's json module writes non-finite floats as the bare literals
// Infinity, -Infinity and NaN, which are not JSON and which nlohmann::json rejects; some hub config.json
// files contain them. They are read here as the strings "Infinity", "-Infinity" and "NaN", so such a file
// parses, and a key that must hold a number and holds one of them fails with a message naming it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dendro {

// Rewrites the bare literals Infinity, -Infinity and NaN found outside JSON strings as quoted strings.
std::string quote_nonfinite_literals(std::string_view json_text);

// Parses `json_text` (after quote_nonfinite_literals); throws dendro::Error naming `source` on bad JSON.
nlohmann::json parse_hf_json(std::string_view json_text, const std::string& source);

// The value of a non-negative JSON integer, else nullopt. nlohmann holds integers above INT64_MAX unsigned,
// and get<int64_t>() would wrap those to negative numbers; range-check the result with checked_int.h.
std::optional<uint64_t> json_unsigned(const nlohmann::json& value);

// Reads and parses a JSON file; throws dendro::Error naming the path when it is missing or malformed.
nlohmann::json read_hf_json_file(const std::string& path);

}  // namespace dendro
