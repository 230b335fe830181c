// data.pkl bytes -> read_torch_state_dict_pickle, the restricted unpickler of pytorch_model.bin (opcodes,
// memo, marks, globals, persistent ids, nesting, the object and size limits). A pickle it accepts must
// describe tensors the checkpoint reader can check: named, with a known storage type, one stride per
// dimension and no negative count.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_support.h"
#include "torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dendro::fuzz::reject_with_dendro_error([&] {
        const auto tensors = dendro::read_torch_state_dict_pickle(std::span<const uint8_t>(data, size), "fuzz data.pkl");
        for (const dendro::TorchPickledTensor& t : tensors) {
            dendro::fuzz::require(!t.storage_key.empty(), "a tensor without a storage key");
            bool known_dtype = true;  // an unknown one would be rejected later: here it is a finding
            try {
                (void)dendro::torch_dtype_element_size(t.dtype);
            } catch (const dendro::Error&) {
                known_dtype = false;
            }
            dendro::fuzz::require(known_dtype, "a tensor of an unknown storage type");
            dendro::fuzz::require(t.storage_numel >= 0, "a negative storage size");
            dendro::fuzz::require(t.stride.size() == t.shape.size(), "strides and dimensions differ in number");
        }
    });
    return 0;
}
