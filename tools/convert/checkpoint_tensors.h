// The tensors of a checkpoint as the converter consumes them, whatever the container: safetensors files or
// a torch.save zip (pytorch_model.bin). Each record views its bytes in place in a mapped file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dendro {

struct CheckpointTensor {
    std::string name;
    std::string dtype;           // safetensors' spelling: "F32", "F16", "BF16", "I64", ...
    std::vector<int64_t> shape;  // PyTorch order: outermost dimension first
    std::span<const uint8_t> data;  // dense, row-major; not necessarily aligned for its element type
    std::string file;            // path of the file holding it (for messages)

    int64_t n_elements() const;
    std::string shape_string() const;  // "[50280, 768]"
};

class CheckpointTensors {
public:
    virtual ~CheckpointTensors() = default;
    virtual const CheckpointTensor* find(std::string_view name) const = 0;
    // Every tensor of the checkpoint, sorted by name.
    virtual std::vector<const CheckpointTensor*> tensors() const = 0;
};

}  // namespace dendro
