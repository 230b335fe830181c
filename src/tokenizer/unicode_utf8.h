// UTF-8 validation by the Unicode rules (no overlongs, no surrogates, nothing above U+10FFFF), replacement
// of ill-formed bytes by U+FFFD one "maximal subpart" at a time (as Python and Rust decode lossily), and NFC.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dendro::utf8 {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// What the bytes at `pos` hold: `expected` is the length of the sequence their first byte announces (0 when
// that byte can start no sequence), `valid` how many of them, from the first, are consistent with it.
// A complete character is valid == expected > 0.
struct SequenceScan {
    size_t expected = 0;
    size_t valid = 0;
    bool complete() const { return expected > 0 && valid == expected; }
};
SequenceScan scan_sequence(std::string_view text, size_t pos);

// Reads the character at `pos` and advances past it; false (pos unchanged) when the bytes there are not a
// complete, well-formed character.
bool next_codepoint(std::string_view text, size_t& pos, char32_t& codepoint);

// The UTF-8 encoding of a Unicode scalar value.
std::string encode_codepoint(char32_t codepoint);

// Bytes at the end of `text` that begin a character the text does not finish yet (0 to 3).
size_t incomplete_tail_length(std::string_view text);

// `text` with every maximal ill-formed subpart replaced by U+FFFD.
std::string replace_invalid(std::string_view text);

// Canonical composition (NFC) of well-formed UTF-8 text.
std::string nfc(std::string_view valid_text);

}  // namespace dendro::utf8
