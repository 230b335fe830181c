// Safetensors bytes -> SafetensorsFile::open (header length, JSON header, dtypes, shapes, data offsets);
// every tensor it accepts must lie inside the file and hold exactly its shape's bytes.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static dendro::fuzz::MemoryFile input("fuzz-safetensors");
    input.write(dendro::fuzz::as_text(data, size));
    dendro::fuzz::reject_with_dendro_error([&] {
        const auto file = dendro::SafetensorsFile::open(input.path());
        uint64_t total = 0;
        for (const dendro::SafetensorsTensor& tensor : file->tensors()) {
            (void)tensor.n_elements();
            (void)tensor.shape_string();
            dendro::fuzz::require(file->find(tensor.name) == &tensor, "find() misses a listed tensor");
            // Touching the first and last byte lets ASan check that the view lies inside the mapping.
            if (!tensor.data.empty()) {
                volatile uint8_t edge = tensor.data.front();
                edge = tensor.data.back();
                (void)edge;
            }
            total += tensor.data.size();
        }
        dendro::fuzz::require(total <= size, "the tensors hold more bytes than the file");
    });
    return 0;
}
