// Loading a Mamba-1 model from a GGUF file laid out as llama.cpp's architecture "mamba" writes it.
#include "model/model.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <optional>

#include "common/error.h"

namespace dendro {
namespace {

constexpr const char* kArchitecture = "mamba";

// Weight matrices may have any type Dendro reads: the floats, Q8_0, the legacy quants and Q2_K..Q6_K.
bool is_matrix_type(GgmlType type) {
    const auto traits = ggml_type_traits(static_cast<uint32_t>(type));
    return traits && traits->supported;
}

bool is_vector_type(GgmlType type) {
    return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
}

std::string shape_text(std::initializer_list<int64_t> ne) {
    std::string text = "{";
    bool first = true;
    for (int64_t n : ne) {
        text += concat(first ? "" : ", ", n);
        first = false;
    }
    return text + "}";
}

class Loader {
    // Runs a GgufFile getter, adding the file and key to its error.
    template <typename Get>
    decltype(auto) guarded(std::string_view key, Get get) const {
        try {
            return get(key);
        } catch (const Error& e) {
            fail(file_.path(), ": key ", key, ": ", e.what());
        }
    }

public:
    explicit Loader(const GgufFile& file) : file_(file) {}

    ModelHparams read_hparams() const {
        const GgufValue* arch = file_.find("general.architecture");
        if (arch == nullptr) fail(file_.path(), ": not a Mamba model: key general.architecture is missing");
        const std::string& arch_name = string_key("general.architecture");
        if (arch_name != kArchitecture) {
            fail(file_.path(), ": architecture is '", arch_name, "', but Dendro runs only '", kArchitecture,
                 "' (Mamba-1) models");
        }
        ModelHparams hp;
        hp.d_model = positive_key("mamba.embedding_length");
        hp.n_layer = positive_key("mamba.block_count");
        hp.d_conv = positive_key("mamba.ssm.conv_kernel");
        hp.d_inner = positive_key("mamba.ssm.inner_size");
        hp.d_state = positive_key("mamba.ssm.state_size");
        hp.dt_rank = positive_key("mamba.ssm.time_step_rank");
        hp.norm_eps = epsilon_key("mamba.attention.layer_norm_rms_epsilon", std::nullopt);
        hp.dt_b_c_rms = guarded("mamba.ssm.dt_b_c_rms", [&](std::string_view k) {
            return file_.get_bool_opt(k).value_or(false);
        });
        hp.mixer_rms_eps = epsilon_key(kMixerRmsEpsKey, hp.mixer_rms_eps);
        return hp;
    }

    // A required tensor of exactly the shape `ne`.
    TensorView tensor(const std::string& name, std::initializer_list<int64_t> ne, bool matrix) const {
        const GgufTensorInfo* info = file_.find_tensor(name);
        if (info == nullptr) fail(file_.path(), ": tensor ", name, " is missing");
        return view(*info, ne, matrix);
    }

    // An optional tensor: an empty view when the file has none.
    TensorView optional_tensor(const std::string& name, std::initializer_list<int64_t> ne, bool matrix) const {
        const GgufTensorInfo* info = file_.find_tensor(name);
        return info == nullptr ? TensorView{} : view(*info, ne, matrix);
    }

    // The conv weight: {d_conv, d_inner}, or {d_conv, 1, d_inner} as some converters keep PyTorch's middle axis.
    TensorView conv_weight(const std::string& name, int64_t d_conv, int64_t d_inner) const {
        const GgufTensorInfo* info = file_.find_tensor(name);
        if (info == nullptr) fail(file_.path(), ": tensor ", name, " is missing");
        if (info->ne.size() == 3 && info->ne[0] == d_conv && info->ne[1] == 1 && info->ne[2] == d_inner) {
            TensorView v = view_unchecked(*info, false);
            v.ne = {d_conv, d_inner, 1, 1};
            return v;
        }
        return view(*info, {d_conv, d_inner}, false);
    }

    const GgufFile& file() const { return file_; }

private:
    const std::string& string_key(std::string_view key) const {
        return guarded(key, [&](std::string_view k) -> const std::string& { return file_.get_string(k); });
    }

    int64_t positive_key(std::string_view key) const {
        if (file_.find(key) == nullptr) fail(file_.path(), ": key ", key, " is missing");
        const uint64_t value = guarded(key, [&](std::string_view k) { return file_.get_uint(k); });
        // Bounded well below int64 so that products of two dimensions cannot overflow.
        constexpr uint64_t kMaxDimension = uint64_t{1} << 31;
        if (value == 0 || value > kMaxDimension) fail(file_.path(), ": key ", key, " has invalid value ", value);
        return static_cast<int64_t>(value);
    }

    float epsilon_key(std::string_view key, std::optional<float> fallback) const {
        if (file_.find(key) == nullptr) {
            if (!fallback) fail(file_.path(), ": key ", key, " is missing");
            return *fallback;
        }
        const double value = guarded(key, [&](std::string_view k) { return file_.get_float(k); });
        if (!(value > 0.0) || !std::isfinite(value)) fail(file_.path(), ": key ", key, " has invalid value ", value);
        return static_cast<float>(value);
    }

    TensorView view(const GgufTensorInfo& info, std::initializer_list<int64_t> ne, bool matrix) const {
        bool same = info.ne.size() == ne.size();
        for (size_t i = 0; same && i < ne.size(); ++i) same = info.ne[i] == *(ne.begin() + i);
        if (!same) {
            fail(file_.path(), ": tensor ", info.name, " has shape ", info.shape_string(), ", expected ",
                 shape_text(ne));
        }
        return view_unchecked(info, matrix);
    }

    TensorView view_unchecked(const GgufTensorInfo& info, bool matrix) const {
        if (matrix ? !is_matrix_type(info.type) : !is_vector_type(info.type)) {
            fail(file_.path(), ": tensor ", info.name, " has type ", ggml_type_name(info.type),
                 matrix ? concat("; weight matrices must be one of ", supported_ggml_type_names())
                        : std::string("; norms, biases and SSM parameters must be F32, F16 or BF16"));
        }
        return TensorView::of(info);
    }

    const GgufFile& file_;
};

std::string layer_tensor(int64_t layer, const char* suffix) { return concat("blk.", layer, ".", suffix); }

Mamba1LayerWeights load_layer(const Loader& loader, const ModelHparams& hp, int64_t il) {
    const int64_t n_xdbc = hp.dt_rank + 2 * hp.d_state;
    Mamba1LayerWeights w;
    w.attn_norm = loader.tensor(layer_tensor(il, "attn_norm.weight"), {hp.d_model}, false);
    w.ssm_in = loader.tensor(layer_tensor(il, "ssm_in.weight"), {hp.d_model, 2 * hp.d_inner}, true);
    w.ssm_in_b = loader.optional_tensor(layer_tensor(il, "ssm_in.bias"), {2 * hp.d_inner}, false);
    w.conv1d_w = loader.conv_weight(layer_tensor(il, "ssm_conv1d.weight"), hp.d_conv, hp.d_inner);
    w.conv1d_b = loader.optional_tensor(layer_tensor(il, "ssm_conv1d.bias"), {hp.d_inner}, false);
    w.ssm_x = loader.tensor(layer_tensor(il, "ssm_x.weight"), {hp.d_inner, n_xdbc}, true);
    w.ssm_dt_w = loader.tensor(layer_tensor(il, "ssm_dt.weight"), {hp.dt_rank, hp.d_inner}, true);
    w.ssm_dt_b = loader.tensor(layer_tensor(il, "ssm_dt.bias"), {hp.d_inner}, false);
    w.ssm_a = loader.tensor(layer_tensor(il, "ssm_a"), {hp.d_state, hp.d_inner}, false);
    w.ssm_d = loader.tensor(layer_tensor(il, "ssm_d"), {hp.d_inner}, false);
    w.ssm_out = loader.tensor(layer_tensor(il, "ssm_out.weight"), {hp.d_inner, hp.d_model}, true);
    w.ssm_out_b = loader.optional_tensor(layer_tensor(il, "ssm_out.bias"), {hp.d_model}, false);
    return w;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) { return from_gguf(GgufFile::open(path)); }

std::unique_ptr<Model> Model::from_gguf(std::unique_ptr<GgufFile> file) {
    std::unique_ptr<Model> model(new Model());
    const Loader loader(*file);
    ModelHparams hp = loader.read_hparams();

    const GgufTensorInfo* embd = file->find_tensor("token_embd.weight");
    if (embd == nullptr) fail(file->path(), ": tensor token_embd.weight is missing");
    if (embd->ne.size() != 2 || embd->ne[0] != hp.d_model || embd->ne[1] <= 0) {
        fail(file->path(), ": tensor token_embd.weight has shape ", embd->shape_string(), ", expected {",
             hp.d_model, ", n_vocab}");
    }
    hp.n_vocab = embd->ne[1];

    ModelWeights& w = model->weights_;
    w.token_embd = loader.tensor("token_embd.weight", {hp.d_model, hp.n_vocab}, true);
    w.output_norm = loader.tensor("output_norm.weight", {hp.d_model}, false);
    w.output = loader.optional_tensor("output.weight", {hp.d_model, hp.n_vocab}, true);
    w.tied_output = !w.output.present();
    if (w.tied_output) w.output = w.token_embd;
    // Not reserved by block_count: a count the file cannot hold fails on its first missing layer tensor, and
    // the list grows only with layers that exist.
    for (int64_t il = 0; il < hp.n_layer; ++il) w.layers.push_back(load_layer(loader, hp, il));

    model->hparams_ = hp;
    const std::optional<std::string> general_name = file->get_string_opt("general.name");
    model->name_ = general_name && !general_name->empty() ? *general_name
                                                           : std::filesystem::path(file->path()).stem().string();
    model->file_ = std::move(file);
    return model;
}

uint64_t Model::weight_bytes() const {
    uint64_t total = weights_.token_embd.nbytes + weights_.output_norm.nbytes;
    if (!weights_.tied_output) total += weights_.output.nbytes;
    for (const Mamba1LayerWeights& l : weights_.layers) {
        for (const TensorView* t : {&l.attn_norm, &l.ssm_in, &l.ssm_in_b, &l.conv1d_w, &l.conv1d_b, &l.ssm_x,
                                    &l.ssm_dt_w, &l.ssm_dt_b, &l.ssm_a, &l.ssm_d, &l.ssm_out, &l.ssm_out_b}) {
            total += t->nbytes;  // absent optional tensors hold 0 bytes
        }
    }
    return total;
}

}  // namespace dendro
