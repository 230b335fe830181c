// Arbitrary bytes through the tokenizers built from committed fixtures: the byte-level BPE ones
// (bpe-shakespeare, GPT-NeoX-20B; both NFC-normalize) and the SentencePiece ones (spm-shakespeare, Mistral v3,
// the bundled model's). Checked for every input and tokenizer:
//   - encode never fails and gives ids inside the vocabulary; decode accepts them;
//   - StreamDecoder's pieces are whole UTF-8 and add up to decode() with ill-formed bytes replaced.
// decode(encode(text)) == text does not hold in general: the BPE tokenizers NFC-normalize well-formed text;
// SentencePiece normalizes (NFKC for spm-shakespeare), collapses and trims whitespace
// (remove_extra_whitespaces), decodes U+2581 as a space and characters it lacks as " ⁇ "; control tokens
// written literally (<|endoftext|>, </s>) decode to nothing. What holds, and is checked:
//   - BPE: decode(encode(text)) == text with each well-formed run NFC-normalized and each byte of an
//     ill-formed sequence kept as it is, or dropped when the vocabulary has no token for it (GPT-NeoX-20B
//     lacks the bytes that never occur in UTF-8, such as 0xFC), when no control token came out;
//   - every tokenizer: printable ASCII with single inner spaces and none at either end (taken from the input)
//     comes back unchanged, when no control or unknown token came out.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "format/gguf.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_gguf.h"
#include "tokenizer/unicode_utf8.h"

namespace {

// Room for every fixture's vocabulary (the largest, GPT-NeoX-20B, has 50,281 tokens).
constexpr int64_t kFixturePaddedVocab = dendro::test::kNeoxPaddedVocab;
constexpr std::string_view kSpmUnknownSurface = " \xE2\x81\x87 ";  // what SentencePiece shows for <unk>
constexpr char kFirstPrintableAscii = 0x21, kLastPrintableAscii = 0x7e;

struct FixtureTokenizer {
    std::string name;
    bool byte_level_bpe;
    dendro::test::LoadedTokenizer loaded;
    std::array<bool, 256> byte_has_token{};  // BPE: whether a lone (ill-formed) byte encodes to a token
};

std::vector<FixtureTokenizer> load_fixture_tokenizers() {
    static dendro::test::TempDir dir;
    std::vector<FixtureTokenizer> out;
    const auto from_hf = [&](const std::string& name, const std::string& hf_dir, bool bpe) {
        const std::string path = dir.file(name + ".gguf");
        dendro::test::write_vocab_gguf(path, hf_dir, bpe ? kFixturePaddedVocab : dendro::test::kMistralVocab);
        FixtureTokenizer& fixture = out.emplace_back(FixtureTokenizer{name, bpe, dendro::test::load_tokenizer(path)});
        for (size_t byte = 0; byte < fixture.byte_has_token.size(); ++byte) {
            const std::string lone(1, static_cast<char>(byte));
            fixture.byte_has_token[byte] = !fixture.loaded.tokenizer->encode(lone, false).empty();
        }
    };
    from_hf("bpe-shakespeare", dendro::test::test_data_path("hf/tokenizers/bpe-shakespeare"), true);
    from_hf("gpt-neox-20b", dendro::test::tokenizer_dir(dendro::test::kNeoxTokenizer), true);
    from_hf("spm-shakespeare", dendro::test::test_data_path("hf/tokenizers/spm-shakespeare"), false);
    from_hf("mistral-v3", dendro::test::tokenizer_dir(dendro::test::kMistralTokenizer), false);
    out.push_back({"bundled", false,
                   dendro::test::load_tokenizer(std::string(DENDRO_MODELS_DIR) + "/dendro-shakespeare-2m.gguf")});
    return out;
}

// What the byte-level BPE tokenizers give back: each maximal well-formed run NFC-normalized, every byte of
// an ill-formed sequence as it is when the vocabulary has a token for it.
std::string bpe_normal_form(std::string_view text, const std::array<bool, 256>& byte_has_token) {
    std::string out;
    size_t run_start = 0, pos = 0;
    while (pos < text.size()) {
        const dendro::utf8::SequenceScan scan = dendro::utf8::scan_sequence(text, pos);
        if (scan.complete()) {
            pos += scan.expected;
            continue;
        }
        out += dendro::utf8::nfc(text.substr(run_start, pos - run_start));
        if (byte_has_token[static_cast<unsigned char>(text[pos])]) out += text[pos];
        run_start = ++pos;
    }
    out += dendro::utf8::nfc(text.substr(run_start));
    return out;
}

// The printable ASCII characters of `bytes`, runs of anything else as one space, no space at either end.
std::string plain_ascii(std::string_view bytes) {
    std::string out;
    for (const char c : bytes) {
        if (c >= kFirstPrintableAscii && c <= kLastPrintableAscii) {
            out += c;
        } else if (!out.empty() && out.back() != ' ') {
            out += ' ';
        }
    }
    if (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

// Whether some token decodes to nothing (control, unused) or, when `unknown_too`, to SentencePiece's <unk>.
bool has_invisible_token(const dendro::Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool unknown_too) {
    for (const int32_t id : ids) {
        const std::string bytes = tokenizer.token_bytes(id);
        if (bytes.empty() || (unknown_too && bytes == kSpmUnknownSurface)) return true;
    }
    return false;
}

void check_streaming(const dendro::Tokenizer& tokenizer, const std::vector<int32_t>& ids, const std::string& decoded) {
    dendro::StreamDecoder stream(tokenizer);
    std::string streamed;
    const auto add_piece = [&](const std::string& piece) {
        dendro::fuzz::require(dendro::utf8::replace_invalid(piece) == piece, "StreamDecoder gave ill-formed UTF-8");
        streamed += piece;
    };
    for (const int32_t id : ids) add_piece(stream.push(id));
    add_piece(stream.flush());
    dendro::fuzz::require(streamed == dendro::utf8::replace_invalid(decoded),
                          "StreamDecoder's pieces do not add up to decode()");
}

void check(const FixtureTokenizer& fixture, std::string_view text) {
    const dendro::Tokenizer& tokenizer = *fixture.loaded.tokenizer;
    const std::vector<int32_t> ids = tokenizer.encode(text, false);
    for (const int32_t id : ids) {
        dendro::fuzz::require(id >= 0 && id < tokenizer.n_vocab(), "encode gave an id outside the vocabulary");
    }
    const std::string decoded = tokenizer.decode(ids);
    check_streaming(tokenizer, ids, decoded);
    if (fixture.byte_level_bpe && !has_invisible_token(tokenizer, ids, false)) {
        dendro::fuzz::require_same_text(decoded, bpe_normal_form(text, fixture.byte_has_token),
                                        fixture.name + ": decode(encode(text)) != text with NFC-normalized runs");
    }

    const std::string ascii = plain_ascii(text);
    const std::vector<int32_t> ascii_ids = tokenizer.encode(ascii, false);
    if (!has_invisible_token(tokenizer, ascii_ids, true)) {
        dendro::fuzz::require_same_text(tokenizer.decode(ascii_ids), ascii, fixture.name + ": plain ASCII does not round-trip");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<FixtureTokenizer> tokenizers = load_fixture_tokenizers();
    for (const FixtureTokenizer& fixture : tokenizers) check(fixture, dendro::fuzz::as_text(data, size));
    return 0;
}
