// The UTF-8 helpers tokenizers and the StreamDecoder rely on: validation by the Unicode rules, incomplete
// tails, replacement of ill-formed bytes one maximal subpart at a time (as Python and Rust decode), NFC.
#include <gtest/gtest.h>

#include <string>

#include "tokenizer/unicode_utf8.h"

namespace dendro::utf8 {
namespace {

const std::string kFffd(kReplacementCharacter);

TEST(Utf8, ScanFollowsTheUnicodeTable) {
    EXPECT_TRUE(scan_sequence("A", 0).complete());
    EXPECT_TRUE(scan_sequence("\xC3\xA9", 0).complete());
    EXPECT_TRUE(scan_sequence("\xE2\x82\xAC", 0).complete());
    EXPECT_TRUE(scan_sequence("\xF0\x9F\x98\x80", 0).complete());
    EXPECT_EQ(scan_sequence("\xC0\xAF", 0).expected, 0u);  // overlong lead
    EXPECT_EQ(scan_sequence("\x80", 0).expected, 0u);      // stray continuation
    EXPECT_EQ(scan_sequence("\xF5\x80\x80\x80", 0).expected, 0u);
    const SequenceScan overlong = scan_sequence("\xE0\x80\xAF", 0);
    EXPECT_EQ(overlong.expected, 3u);
    EXPECT_EQ(overlong.valid, 1u);
    EXPECT_EQ(scan_sequence("\xED\xA0\x80", 0).valid, 1u);      // a surrogate
    EXPECT_EQ(scan_sequence("\xF4\x90\x80\x80", 0).valid, 1u);  // above U+10FFFF
    EXPECT_EQ(scan_sequence("\xE2\x82", 0).valid, 2u);          // truncated
}

TEST(Utf8, IncompleteTail) {
    EXPECT_EQ(incomplete_tail_length(""), 0u);
    EXPECT_EQ(incomplete_tail_length("abc"), 0u);
    EXPECT_EQ(incomplete_tail_length("a\xE2"), 1u);
    EXPECT_EQ(incomplete_tail_length("a\xE2\x82"), 2u);
    EXPECT_EQ(incomplete_tail_length("a\xE2\x82\xAC"), 0u);
    EXPECT_EQ(incomplete_tail_length("\xF0\x9F\x98"), 3u);
    EXPECT_EQ(incomplete_tail_length("a\x82"), 0u);      // cannot be completed: not held
    EXPECT_EQ(incomplete_tail_length("a\xE0\x80"), 0u);  // never a character
}

TEST(Utf8, ReplaceInvalidByMaximalSubparts) {
    EXPECT_EQ(replace_invalid("caf\xC3\xA9"), "caf\xC3\xA9");
    EXPECT_EQ(replace_invalid("a\xFF" "b"), "a" + kFffd + "b");
    EXPECT_EQ(replace_invalid("\xE2\x82" "A"), kFffd + "A");                  // one subpart
    EXPECT_EQ(replace_invalid("\xF0\x80\x80"), kFffd + kFffd + kFffd);         // F0 80: each byte alone
    EXPECT_EQ(replace_invalid("\xED\xA0\x80"), kFffd + kFffd + kFffd);         // surrogate
    EXPECT_EQ(replace_invalid("x\xE2"), "x" + kFffd);
}

TEST(Utf8, CodepointsRoundTrip) {
    for (const char32_t cp : {U'A', U'\u00E9', U'\u20AC', U'\U0001F600', U'\U0010FFFF'}) {
        const std::string encoded = encode_codepoint(cp);
        size_t pos = 0;
        char32_t decoded = 0;
        ASSERT_TRUE(next_codepoint(encoded, pos, decoded));
        EXPECT_EQ(decoded, cp);
        EXPECT_EQ(pos, encoded.size());
    }
    size_t pos = 0;
    char32_t ignored = 0;
    EXPECT_FALSE(next_codepoint("\xC3", pos, ignored));
    EXPECT_EQ(pos, 0u);
}

TEST(Utf8, Nfc) {
    EXPECT_EQ(nfc("cafe\xCC\x81"), "caf\xC3\xA9");                 // e + combining acute -> é
    EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // Hangul jamo -> 각
    EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                     // ANGSTROM SIGN -> Å
    EXPECT_EQ(nfc("\xEF\xAC\x81"), "\xEF\xAC\x81");                 // the fi ligature stays (NFKC would not)
    EXPECT_EQ(nfc(std::string("a\0b", 3)), std::string("a\0b", 3));
    EXPECT_EQ(nfc(std::string("\xC3\xA9\0", 3)), std::string("\xC3\xA9\0", 3));
}

}  // namespace
}  // namespace dendro::utf8
