// Safetensors bytes -> SafetensorsFile::open (header length, JSON header, dtypes, shapes, data offsets).
// The tensors it accepts must tile one data section inside the file (each starts where the one before it
// ends). The file is memory-mapped, and ASan does not see reads past its end inside the last page, so
// these checks are what catches a view that runs past it.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_support.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static dendro::fuzz::MemoryFile input("fuzz-safetensors");
    input.write(dendro::fuzz::as_text(data, size));
    dendro::fuzz::reject_with_dendro_error([&] {
        const auto file = dendro::SafetensorsFile::open(input.path());
        uint64_t total = 0;
        const uint8_t* expected_begin = nullptr;
        for (const dendro::SafetensorsTensor& tensor : file->tensors()) {
            dendro::fuzz::require(expected_begin == nullptr || tensor.data.data() == expected_begin,
                                  "the tensors do not tile the data section");
            expected_begin = tensor.data.data() + tensor.data.size();
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
        // The data section is what follows the 8-byte header length and the header.
        uint64_t header_bytes = 0;
        std::memcpy(&header_bytes, data, sizeof header_bytes);
        dendro::fuzz::require(total == size - sizeof header_bytes - header_bytes,
                              "the tensors do not fill the data section exactly");
    });
    return 0;
}
