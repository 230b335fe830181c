#include "common/byte_size.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "common/error.h"

namespace dendro {
namespace {

constexpr double kUnitStep = 1024.0;
constexpr const char* kUnitLetters = "KMGT";
constexpr const char* kUnitNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};

}  // namespace

uint64_t parse_byte_size(std::string_view text) {
    const auto bad = [&text]() -> uint64_t {
        fail("invalid size '", text, "': expected a positive number with an optional unit K, M, G or T (e.g. 2G)");
    };
    const std::string s(text);
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == 0) return bad();
    char* end = nullptr;
    const std::string number = s.substr(0, i);
    const double value = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size()) return bad();
    std::string unit = s.substr(i);
    double scale = 1.0;
    if (!unit.empty()) {
        const char* letter = std::strchr(kUnitLetters, std::toupper(static_cast<unsigned char>(unit[0])));
        if (letter == nullptr || *letter == '\0') return bad();
        scale = std::pow(kUnitStep, static_cast<double>(letter - kUnitLetters + 1));
        const std::string suffix = unit.substr(1);
        if (!suffix.empty() && suffix != "B" && suffix != "iB") return bad();
    }
    const double bytes = std::floor(value * scale);
    // 2^64 as a double: anything at or above it does not fit.
    if (!(bytes >= 1.0) || bytes >= std::ldexp(1.0, 64)) return bad();
    return static_cast<uint64_t>(bytes);
}

std::string format_byte_size(uint64_t bytes) {
    double value = static_cast<double>(bytes);
    size_t unit = 0;
    while (value >= kUnitStep && unit + 1 < std::size(kUnitNames)) {
        value /= kUnitStep;
        ++unit;
    }
    char text[32];
    if (unit == 0) {
        std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(bytes));
    } else {
        std::snprintf(text, sizeof text, "%.1f %s", value, kUnitNames[unit]);
    }
    return text;
}

}  // namespace dendro
