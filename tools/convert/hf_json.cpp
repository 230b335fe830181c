#include "hf_json.h"

#include <array>
#include <cctype>

#include "common/error.h"
#include "format/regular_file.h"

namespace dendro {
namespace {

constexpr std::array<std::string_view, 3> kNonfiniteLiterals = {"-Infinity", "Infinity", "NaN"};

bool is_identifier_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

}  // namespace

std::string quote_nonfinite_literals(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool in_string = false;
    size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (in_string) {
            out += c;
            if (c == '\\' && i + 1 < text.size()) {
                out += text[i + 1];
                i += 2;
                continue;
            }
            if (c == '"') in_string = false;
            ++i;
            continue;
        }
        if (c == '"') {
            in_string = true;
            out += c;
            ++i;
            continue;
        }
        bool replaced = false;
        const bool at_token_start = i == 0 || !is_identifier_char(text[i - 1]);
        for (const std::string_view literal : kNonfiniteLiterals) {
            const size_t end = i + literal.size();
            if (at_token_start && text.substr(i, literal.size()) == literal &&
                (end == text.size() || !is_identifier_char(text[end]))) {
                out += '"';
                out += literal;
                out += '"';
                i = end;
                replaced = true;
                break;
            }
        }
        if (!replaced) {
            out += c;
            ++i;
        }
    }
    return out;
}

nlohmann::json parse_hf_json(std::string_view json_text, const std::string& source) {
    try {
        return nlohmann::json::parse(quote_nonfinite_literals(json_text));
    } catch (const nlohmann::json::exception& e) {
        fail(source, ": not valid JSON (", e.what(), ")");
    }
}

std::optional<uint64_t> json_unsigned(const nlohmann::json& value) {
    if (value.is_number_unsigned()) return value.get<uint64_t>();
    if (value.is_number_integer() && value.get<int64_t>() >= 0) return static_cast<uint64_t>(value.get<int64_t>());
    return std::nullopt;
}

nlohmann::json read_hf_json_file(const std::string& path) { return parse_hf_json(read_whole_file(path), path); }

}  // namespace dendro
