// Loading a model from a GGUF file: the architecture's keys and layers (architectures.h), then the tensors
// every architecture shares (embedding, final norm, lm_head).
#include "model/model.h"

#include <filesystem>
#include <optional>

#include "common/error.h"
#include "model/architectures.h"

namespace dendro {
namespace {

struct ArchitectureRules {
    Architecture arch;
    const char* description;
    ModelHparams (*read_hparams)(const TensorLoader&);
    LayerWeights (*load_layer)(const TensorLoader&, const ModelHparams&, int64_t);
};

constexpr ArchitectureRules kArchitectures[] = {
    {Architecture::Mamba1, "Mamba-1", read_mamba1_hparams, load_mamba1_layer},
    {Architecture::Mamba2, "Mamba-2", read_mamba2_hparams, load_mamba2_layer},
};

const ArchitectureRules& rules_for(const GgufFile& file) {
    if (file.find("general.architecture") == nullptr) {
        fail(file.path(), ": not a Mamba model: key general.architecture is missing");
    }
    std::string name;
    try {
        name = file.get_string("general.architecture");
    } catch (const Error& e) {
        fail(file.path(), ": key general.architecture: ", e.what());
    }
    std::string known;
    for (const ArchitectureRules& rules : kArchitectures) {
        if (name == architecture_name(rules.arch)) return rules;
        known += concat(known.empty() ? "" : ", ", "'", architecture_name(rules.arch), "' (", rules.description, ")");
    }
    fail(file.path(), ": architecture is '", name, "', but Dendro runs only ", known, " models");
}

}  // namespace

const char* architecture_name(Architecture arch) {
    switch (arch) {
        case Architecture::Mamba1: return "mamba";
        case Architecture::Mamba2: return "mamba2";
    }
    fail("invalid Architecture");
}

std::vector<const TensorView*> layer_tensors(const LayerWeights& layer) {
    std::vector<const TensorView*> views{&layer.attn_norm};
    std::visit([&](const auto& mixer) { for (const TensorView* t : mixer.tensors()) views.push_back(t); },
               layer.mixer);
    return views;
}

std::vector<const TensorView*> layer_matrices(const LayerWeights& layer) {
    return std::visit([](const auto& mixer) {
        const auto matrices = mixer.matrices();
        return std::vector<const TensorView*>(matrices.begin(), matrices.end());
    }, layer.mixer);
}

std::unique_ptr<Model> Model::load(const std::string& path) { return from_gguf(GgufFile::open(path)); }

std::unique_ptr<Model> Model::from_gguf(std::unique_ptr<GgufFile> file) {
    std::unique_ptr<Model> model(new Model());
    const TensorLoader loader(*file);
    const ArchitectureRules& rules = rules_for(*file);
    ModelHparams hp = rules.read_hparams(loader);

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
    for (int64_t il = 0; il < hp.n_layer; ++il) w.layers.push_back(rules.load_layer(loader, hp, il));

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
    for (const LayerWeights& l : weights_.layers) {
        for (const TensorView* t : layer_tensors(l)) total += t->nbytes;  // absent optional tensors hold 0 bytes
    }
    return total;
}

}  // namespace dendro
