// GGUF bytes -> GgufFile::open (header, key/values, tensor infos, data layout), the key listing `dendro info`
// prints, Tokenizer::from_gguf (and a short encode/decode) and Model::from_gguf (hyper-parameters,
// tensor shapes and types).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "fuzz_support.h"
#include "format/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace {

constexpr const char* kSampleText = "ROMEO: But, soft!";

void exercise_tokenizer(const dendro::GgufFile& file) {
    const auto tokenizer = dendro::Tokenizer::from_gguf(file);
    const std::vector<int32_t> ids = tokenizer->encode(kSampleText, true);
    for (const int32_t id : ids) dendro::fuzz::require(id >= 0 && id < tokenizer->n_vocab(), "encode gave an id outside the vocabulary");
    (void)tokenizer->decode(ids);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static dendro::fuzz::MemoryFile input("fuzz-gguf");
    input.write(dendro::fuzz::as_text(data, size));
    dendro::fuzz::reject_with_dendro_error([&] {
        std::unique_ptr<dendro::GgufFile> file = dendro::GgufFile::open(input.path());
        for (const dendro::GgufKeyValue& kv : file->kvs()) (void)dendro::gguf_value_to_string(kv.value);
        // The file is memory-mapped, and ASan does not see reads past its end inside the last page: check
        // that every tensor lies inside the mapping instead.
        const std::span<const uint8_t> bytes = file->bytes();
        for (const dendro::GgufTensorInfo& tensor : file->tensors()) {
            dendro::fuzz::require(tensor.data >= bytes.data() && tensor.nbytes <= bytes.size() &&
                                      static_cast<size_t>(tensor.data - bytes.data()) <= bytes.size() - tensor.nbytes,
                                  "a tensor lies outside the file");
        }
        dendro::fuzz::reject_with_dendro_error([&] { exercise_tokenizer(*file); });
        (void)dendro::Model::from_gguf(std::move(file));
    });
    return 0;
}
