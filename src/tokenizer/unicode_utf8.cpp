#include "tokenizer/unicode_utf8.h"

#include <cstdlib>
#include <memory>

#include <utf8proc.h>

#include "common/error.h"

namespace dendro::utf8 {

namespace {

constexpr unsigned char kAsciiEnd = 0x80;
constexpr unsigned char kContinuationLow = 0x80;
constexpr unsigned char kContinuationHigh = 0xBF;
constexpr unsigned char kContinuationPayload = 0x3F;
constexpr int kContinuationBits = 6;

bool in_range(unsigned char byte, unsigned char low, unsigned char high) { return byte >= low && byte <= high; }

// The range the second byte must fall in after lead byte `lead` (Unicode Table 3-7), and the sequence length.
struct LeadRule {
    size_t length;
    unsigned char second_low, second_high;
};

LeadRule lead_rule(unsigned char lead) {
    if (lead < kAsciiEnd) return {1, 0, 0};
    if (in_range(lead, 0xC2, 0xDF)) return {2, kContinuationLow, kContinuationHigh};
    if (lead == 0xE0) return {3, 0xA0, kContinuationHigh};                 // no overlongs
    if (lead == 0xED) return {3, kContinuationLow, 0x9F};                  // no surrogates
    if (in_range(lead, 0xE1, 0xEF)) return {3, kContinuationLow, kContinuationHigh};
    if (lead == 0xF0) return {4, 0x90, kContinuationHigh};                 // no overlongs
    if (lead == 0xF4) return {4, kContinuationLow, 0x8F};                  // nothing above U+10FFFF
    if (in_range(lead, 0xF1, 0xF3)) return {4, kContinuationLow, kContinuationHigh};
    return {0, 0, 0};
}

}  // namespace

SequenceScan scan_sequence(std::string_view text, size_t pos) {
    const auto lead = static_cast<unsigned char>(text[pos]);
    const LeadRule rule = lead_rule(lead);
    SequenceScan scan{rule.length, rule.length == 0 ? 0u : 1u};
    if (rule.length <= 1) return scan;
    for (size_t i = 1; i < rule.length && pos + i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[pos + i]);
        const bool ok = i == 1 ? in_range(byte, rule.second_low, rule.second_high)
                               : in_range(byte, kContinuationLow, kContinuationHigh);
        if (!ok) break;
        ++scan.valid;
    }
    return scan;
}

bool next_codepoint(std::string_view text, size_t& pos, char32_t& codepoint) {
    constexpr unsigned char kLeadPayload[] = {0, 0x7F, 0x1F, 0x0F, 0x07};  // payload bits of a lead byte, by length
    if (pos >= text.size()) return false;
    const SequenceScan scan = scan_sequence(text, pos);
    if (!scan.complete()) return false;
    char32_t value = static_cast<unsigned char>(text[pos]) & kLeadPayload[scan.expected];
    for (size_t i = 1; i < scan.expected; ++i) {
        value = (value << kContinuationBits) | (static_cast<unsigned char>(text[pos + i]) & kContinuationPayload);
    }
    codepoint = value;
    pos += scan.expected;
    return true;
}

std::string encode_codepoint(char32_t codepoint) {
    constexpr char32_t kMaxOneByte = 0x7F, kMaxTwoBytes = 0x7FF, kMaxThreeBytes = 0xFFFF;
    constexpr unsigned char kLeadMark[] = {0, 0, 0xC0, 0xE0, 0xF0};  // by sequence length
    const size_t length = codepoint <= kMaxOneByte      ? 1
                          : codepoint <= kMaxTwoBytes   ? 2
                          : codepoint <= kMaxThreeBytes ? 3
                                                        : 4;
    std::string out(length, '\0');
    for (size_t i = length - 1; i > 0; --i) {
        out[i] = static_cast<char>(kContinuationLow | (codepoint & kContinuationPayload));
        codepoint >>= kContinuationBits;
    }
    out[0] = static_cast<char>(kLeadMark[length] | codepoint);
    return out;
}

size_t incomplete_tail_length(std::string_view text) {
    constexpr size_t kMaxSequence = 4;
    // The tail can only begin within the last three bytes; look for a lead byte whose sequence runs past the end.
    for (size_t back = 1; back < kMaxSequence && back <= text.size(); ++back) {
        const size_t pos = text.size() - back;
        const SequenceScan scan = scan_sequence(text, pos);
        if (scan.expected == 0) continue;  // a continuation byte (or garbage): keep looking for the lead
        return (scan.expected > back && scan.valid == back) ? back : 0;
    }
    return 0;
}

std::string replace_invalid(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
        const SequenceScan scan = scan_sequence(text, pos);
        if (scan.complete()) {
            out.append(text.substr(pos, scan.expected));
            pos += scan.expected;
        } else {
            out.append(kReplacementCharacter);
            pos += scan.valid > 0 ? scan.valid : 1;
        }
    }
    return out;
}

std::string nfc(std::string_view valid_text) {
    bool ascii = true;
    for (const char c : valid_text) ascii = ascii && static_cast<unsigned char>(c) < kAsciiEnd;
    if (ascii) return std::string(valid_text);  // ASCII is always in NFC

    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(valid_text.data()),
                     static_cast<utf8proc_ssize_t>(valid_text.size()), &mapped,
                     static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (length < 0) fail("NFC normalization failed: ", utf8proc_errmsg(length));
    const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(mapped, &std::free);
    return std::string(reinterpret_cast<const char*>(mapped), static_cast<size_t>(length));
}

}  // namespace dendro::utf8
