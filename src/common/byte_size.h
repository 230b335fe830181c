// Human byte sizes for flags and listings: "2G", "512M", "1.5GiB", "100000" (binary multiples).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dendro {

// Parses a positive size: a number with an optional unit K, M, G or T (powers of 1024), optionally followed
// by "B" or "iB"; a bare number is bytes. Throws dendro::Error quoting the text when it is not one.
uint64_t parse_byte_size(std::string_view text);

// "1.5 GiB", "12.0 MiB", "512 B".
std::string format_byte_size(uint64_t bytes);

}  // namespace dendro
