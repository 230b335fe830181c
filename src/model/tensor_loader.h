// Reading a model's keys and tensors out of a GGUF file with every check the architectures share: key
// presence, value ranges, tensor shapes and types. Errors name the file and the key or tensor at fault.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "format/gguf.h"
#include "model/model.h"

namespace dendro {

class TensorLoader {
public:
    explicit TensorLoader(const GgufFile& file) : file_(file) {}

    const GgufFile& file() const { return file_; }

    // A dimension: present, positive, and bounded well below int64 so products of two cannot overflow.
    int64_t dimension_key(std::string_view key) const;
    // A positive finite epsilon; `fallback` when the key is absent (an error when there is none).
    float epsilon_key(std::string_view key, std::optional<float> fallback) const;
    bool bool_key(std::string_view key, bool fallback) const;
    // Any float (infinities included, NaN refused); `fallback` when absent.
    float float_key(std::string_view key, float fallback) const;

    // A required tensor of exactly the shape `ne` (ggml order); `matrix` selects the accepted types.
    TensorView tensor(const std::string& name, std::initializer_list<int64_t> ne, bool matrix) const;
    // An optional tensor: an empty view when the file has none.
    TensorView optional_tensor(const std::string& name, std::initializer_list<int64_t> ne, bool matrix) const;
    // A required vector tensor whose shape in the file is one of `accepted`, all of them the same elements
    // (llama.cpp writes Mamba-2's A and D as {1, n_head}; some converters keep PyTorch's middle axis of the
    // conv weight): viewed with the shape `ne`.
    using Shape = std::vector<int64_t>;
    TensorView reshaped_tensor(const std::string& name, const Shape& ne, std::initializer_list<Shape> accepted) const;

private:
    template <typename Get>
    decltype(auto) guarded(std::string_view key, Get get) const;
    TensorView view(const GgufTensorInfo& info, std::initializer_list<int64_t> ne, bool matrix) const;
    TensorView view_unchecked(const GgufTensorInfo& info, bool matrix) const;

    const GgufFile& file_;
};

// "blk.<layer>.<suffix>"
std::string layer_tensor_name(int64_t layer, std::string_view suffix);

}  // namespace dendro
