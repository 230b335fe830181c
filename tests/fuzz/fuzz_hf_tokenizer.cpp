// tokenizer.json, tokenizer_config.json, config.json and generation_config.json (the parts of one input, see
// kPartSeparator; a missing part is a missing file) -> add_hf_tokenizer into a GGUF vocabulary, then
// Tokenizer::from_gguf on the written file and a short encode/decode.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "fuzz_support.h"
#include "format/gguf.h"
#include "hf_tokenizer.h"
#include "temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace {

constexpr std::array<const char*, 4> kFileNames = {"tokenizer.json", "tokenizer_config.json", "config.json",
                                                   "generation_config.json"};
// Embedding rows of the pretend model: room for the committed fixtures' vocabularies (512 tokens plus added
// ones) while padding stays cheap.
constexpr int64_t kPaddedVocab = 1024;
constexpr const char* kSampleText = "ROMEO: But, soft! <|endoftext|>";

void write_part(const std::string& path, std::string_view bytes) {
    dendro::test::write_file(path, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static dendro::test::TempDir dir;
    const std::vector<std::string_view> parts = dendro::fuzz::split_parts(dendro::fuzz::as_text(data, size), kFileNames.size());
    for (size_t i = 0; i < kFileNames.size(); ++i) {
        const std::string path = dir.file(kFileNames[i]);
        if (i < parts.size()) {
            write_part(path, parts[i]);
        } else {
            std::filesystem::remove(path);
        }
    }
    dendro::fuzz::reject_with_dendro_error([&] {
        dendro::GgufWriter writer;
        dendro::add_hf_tokenizer(dir.path(), kPaddedVocab, writer, [](const std::string&) {});
        const std::string gguf_path = dir.file("vocab.gguf");
        writer.write(gguf_path);
        const auto file = dendro::GgufFile::open(gguf_path);
        const auto tokenizer = dendro::Tokenizer::from_gguf(*file);
        (void)tokenizer->decode(tokenizer->encode(kSampleText, true));
    });
    return 0;
}
