#include "tokenizer_gguf.h"

#include <fstream>
#include <iterator>
#include <stdexcept>

#include <gtest/gtest.h>

#include "hf_tokenizer.h"
#include "tokenizer/unicode_utf8.h"

namespace dendro::test {

std::string test_data_path(const std::string& relative) { return std::string(DENDRO_TEST_DATA) + "/" + relative; }
std::string tokenizer_dir(const std::string& name) { return test_data_path("tokenizers/" + name); }
std::string fixture_path(const std::string& relative) { return test_data_path("tokenizer_fixtures/" + relative); }

void write_vocab_gguf(const std::string& path, const std::string& dir, int64_t n_vocab_padded,
                      const std::function<void(GgufWriter&)>& edit) {
    GgufWriter writer;
    add_hf_tokenizer(dir, n_vocab_padded, writer);
    if (edit) edit(writer);
    writer.write(path);
}

void copy_vocab_gguf_without(const std::string& from, const std::string& to, const std::string& key) {
    const auto file = GgufFile::open(from);
    GgufWriter writer;
    for (const GgufKeyValue& kv : file->kvs()) {
        if (kv.key != key) writer.set(kv.key, kv.value);
    }
    writer.write(to);
}

LoadedTokenizer load_tokenizer(const std::string& gguf_path) {
    LoadedTokenizer loaded;
    loaded.file = GgufFile::open(gguf_path);
    loaded.tokenizer = Tokenizer::from_gguf(*loaded.file);
    return loaded;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<int32_t> read_fixture_ids(const std::string& path) {
    constexpr int kBitsPerByte = 8;
    const std::string bytes = read_text(path);
    if (bytes.size() % 2 != 0) throw std::runtime_error(path + ": odd size for uint16 ids");
    std::vector<int32_t> ids(bytes.size() / 2);
    for (size_t i = 0; i < ids.size(); ++i) {
        const auto low = static_cast<unsigned char>(bytes[2 * i]);
        const auto high = static_cast<unsigned char>(bytes[2 * i + 1]);
        ids[i] = static_cast<int32_t>(low | (high << kBitsPerByte));
    }
    return ids;
}

void expect_streams_like_decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool expect_held) {
    StreamDecoder stream(tokenizer);
    std::string streamed;
    bool held_something = false;
    for (const int32_t id : ids) {
        const std::string piece = stream.push(id);
        EXPECT_EQ(utf8::incomplete_tail_length(piece), 0u);
        EXPECT_EQ(utf8::replace_invalid(piece), piece) << "half a character was emitted";
        held_something = held_something || (piece.empty() && !tokenizer.token_bytes(id).empty());
        streamed += piece;
    }
    streamed += stream.flush();
    EXPECT_EQ(streamed, tokenizer.decode(ids));
    if (expect_held) EXPECT_TRUE(held_something) << "no token ended inside a character";
}

}  // namespace dendro::test
