#include "model/tensor_loader.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace dendro {
namespace {

// Weight matrices may have any type Dendro reads: the floats, Q8_0, the legacy quants and Q2_K..Q6_K.
bool is_matrix_type(GgmlType type) {
    const auto traits = ggml_type_traits(static_cast<uint32_t>(type));
    return traits && traits->supported;
}

bool is_vector_type(GgmlType type) {
    return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
}

template <typename Dims>
std::string shape_text(const Dims& ne) {
    std::string text = "{";
    bool first = true;
    for (int64_t n : ne) {
        text += concat(first ? "" : ", ", n);
        first = false;
    }
    return text + "}";
}

}  // namespace

// Runs a GgufFile getter, adding the file and key to its error.
template <typename Get>
decltype(auto) TensorLoader::guarded(std::string_view key, Get get) const {
    try {
        return get(key);
    } catch (const Error& e) {
        fail(file_.path(), ": key ", key, ": ", e.what());
    }
}

int64_t TensorLoader::dimension_key(std::string_view key) const {
    if (file_.find(key) == nullptr) fail(file_.path(), ": key ", key, " is missing");
    const uint64_t value = guarded(key, [&](std::string_view k) { return file_.get_uint(k); });
    constexpr uint64_t kMaxDimension = uint64_t{1} << 31;
    if (value == 0 || value > kMaxDimension) fail(file_.path(), ": key ", key, " has invalid value ", value);
    return static_cast<int64_t>(value);
}

float TensorLoader::epsilon_key(std::string_view key, std::optional<float> fallback) const {
    if (file_.find(key) == nullptr) {
        if (!fallback) fail(file_.path(), ": key ", key, " is missing");
        return *fallback;
    }
    const double value = guarded(key, [&](std::string_view k) { return file_.get_float(k); });
    if (!(value > 0.0) || !std::isfinite(value)) fail(file_.path(), ": key ", key, " has invalid value ", value);
    return static_cast<float>(value);
}

bool TensorLoader::bool_key(std::string_view key, bool fallback) const {
    return guarded(key, [&](std::string_view k) { return file_.get_bool_opt(k).value_or(fallback); });
}

float TensorLoader::float_key(std::string_view key, float fallback) const {
    if (file_.find(key) == nullptr) return fallback;
    const double value = guarded(key, [&](std::string_view k) { return file_.get_float(k); });
    if (std::isnan(value)) fail(file_.path(), ": key ", key, " is NaN");
    return static_cast<float>(value);
}

TensorView TensorLoader::tensor(const std::string& name, std::initializer_list<int64_t> ne, bool matrix) const {
    const GgufTensorInfo* info = file_.find_tensor(name);
    if (info == nullptr) fail(file_.path(), ": tensor ", name, " is missing");
    return view(*info, ne, matrix);
}

TensorView TensorLoader::optional_tensor(const std::string& name, std::initializer_list<int64_t> ne,
                                         bool matrix) const {
    const GgufTensorInfo* info = file_.find_tensor(name);
    return info == nullptr ? TensorView{} : view(*info, ne, matrix);
}

TensorView TensorLoader::reshaped_tensor(const std::string& name, const Shape& ne,
                                         std::initializer_list<Shape> accepted) const {
    const GgufTensorInfo* info = file_.find_tensor(name);
    if (info == nullptr) fail(file_.path(), ": tensor ", name, " is missing");
    bool known = false;
    std::string choices;
    for (const Shape& shape : accepted) {
        known = known || (info->ne.size() == shape.size() && std::equal(shape.begin(), shape.end(), info->ne.begin()));
        choices += concat(choices.empty() ? "" : " or ", shape_text(shape));
    }
    if (!known) fail(file_.path(), ": tensor ", name, " has shape ", info->shape_string(), ", expected ", choices);
    TensorView v = view_unchecked(*info, false);
    v.ne = {1, 1, 1, 1};
    std::copy(ne.begin(), ne.end(), v.ne.begin());
    return v;
}

TensorView TensorLoader::view(const GgufTensorInfo& info, std::initializer_list<int64_t> ne, bool matrix) const {
    bool same = info.ne.size() == ne.size();
    for (size_t i = 0; same && i < ne.size(); ++i) same = info.ne[i] == *(ne.begin() + i);
    if (!same) {
        fail(file_.path(), ": tensor ", info.name, " has shape ", info.shape_string(), ", expected ", shape_text(ne));
    }
    return view_unchecked(info, matrix);
}

TensorView TensorLoader::view_unchecked(const GgufTensorInfo& info, bool matrix) const {
    if (matrix ? !is_matrix_type(info.type) : !is_vector_type(info.type)) {
        fail(file_.path(), ": tensor ", info.name, " has type ", ggml_type_name(info.type),
             matrix ? concat("; weight matrices must be one of ", supported_ggml_type_names())
                    : std::string("; norms, biases and SSM parameters must be F32, F16 or BF16"));
    }
    return TensorView::of(info);
}

std::string layer_tensor_name(int64_t layer, std::string_view suffix) { return concat("blk.", layer, ".", suffix); }

}  // namespace dendro
