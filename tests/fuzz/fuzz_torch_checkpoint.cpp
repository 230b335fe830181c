// pytorch_model.bin bytes -> TorchCheckpoint::open: the zip container through libzip (directories, local
// headers, compression, CRC-32, duplicate records), the record layout torch.save writes, and each tensor's
// view into its storage record. The file is memory-mapped, so the view checks are what keeps a tensor inside
// it: touching each view's first and last byte lets ASan see a view outside the mapping.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static dendro::fuzz::MemoryFile input("fuzz-torch-checkpoint");
    input.write(dendro::fuzz::as_text(data, size));
    dendro::fuzz::reject_with_dendro_error([&] {
        const auto checkpoint = dendro::TorchCheckpoint::open(input.path());
        for (const dendro::CheckpointTensor* tensor : checkpoint->tensors()) {
            dendro::fuzz::require(checkpoint->find(tensor->name) == tensor, "find() misses a listed tensor");
            (void)tensor->shape_string();
            if (!tensor->data.empty()) {
                volatile uint8_t edge = tensor->data.front();
                edge = tensor->data.back();
                (void)edge;
            }
        }
    });
    return 0;
}
