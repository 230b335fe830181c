#include "tokenizer_gguf.h"

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "hf_tokenizer.h"

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

}  // namespace dendro::test
