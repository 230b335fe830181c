// Loading Mamba GGUF files: hyper-parameters, tensor views, tied and untied heads, and one clear error per
// kind of bad file (wrong architecture, missing key, missing tensor, wrong shape, wrong type).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>

#include "common/error.h"
#include "format/gguf.h"
#include "model/model.h"
#include "random_model_file.h"
#include "tokenizer/tokenizer.h"

namespace dendro {
namespace {

using test::TempModelFile;

// Copies a GGUF file, letting `edit_kv` replace or drop (nullopt) each key and `edit_tensor` change a
// tensor's shape or type or drop it (false); tensors whose shape or type changed get zero bytes.
struct TensorEdit {
    GgmlType type;
    std::vector<int64_t> ne;
};
using KvEdit = std::function<std::optional<GgufValue>(const std::string& key, const GgufValue& value)>;
using TensorEditFn = std::function<bool(const std::string& name, TensorEdit& edit)>;

void rewrite(const std::string& src, const std::string& dst, const KvEdit& edit_kv, const TensorEditFn& edit_tensor,
             const std::vector<GgufKeyValue>& extra_kvs = {}) {
    const auto in = GgufFile::open(src);
    GgufWriter out;
    for (const GgufKeyValue& kv : in->kvs()) {
        std::optional<GgufValue> v = edit_kv ? edit_kv(kv.key, kv.value) : kv.value;
        if (v) out.set(kv.key, *v);
    }
    for (const GgufKeyValue& kv : extra_kvs) out.set(kv.key, kv.value);
    for (const GgufTensorInfo& t : in->tensors()) {
        TensorEdit e{t.type, t.ne};
        if (edit_tensor && !edit_tensor(t.name, e)) continue;
        if (e.type == t.type && e.ne == t.ne) {
            out.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.nbytes));
        } else {
            int64_t rows = 1;
            for (size_t i = 1; i < e.ne.size(); ++i) rows *= e.ne[i];
            out.add_tensor(t.name, e.type, e.ne, std::vector<uint8_t>(ggml_row_size(e.type, e.ne[0]) * rows, 0));
        }
    }
    out.write(dst);
}

class ModelLoad : public ::testing::Test {
protected:
    explicit ModelLoad(const ModelHparams& hp = test::tiny_hparams_any_length())
        : hp_(hp), file_(hp_, GgmlType::F16, 1, false) {}

    // Rewrites the good file with an edit and returns the error message loading it gives.
    std::string load_error(const KvEdit& kv, const TensorEditFn& tensor, const std::vector<GgufKeyValue>& extra = {}) {
        const std::string path = dir_.file("edited.gguf");
        rewrite(file_.path(), path, kv, tensor, extra);
        try {
            Model::load(path);
        } catch (const Error& e) {
            const std::string message = e.what();
            EXPECT_NE(message.find(path), std::string::npos) << message;
            return message;
        }
        ADD_FAILURE() << "the edited file loaded";
        return {};
    }

    ModelHparams hp_;
    TempModelFile file_;
    test::TempDir dir_;
};

TEST_F(ModelLoad, ReadsHyperParametersAndTensors) {
    const auto model = Model::load(file_.path());
    const ModelHparams& hp = model->hparams();
    EXPECT_EQ(hp.n_vocab, hp_.n_vocab);
    EXPECT_EQ(hp.d_model, hp_.d_model);
    EXPECT_EQ(hp.n_layer, hp_.n_layer);
    EXPECT_EQ(hp.d_conv, hp_.d_conv);
    EXPECT_EQ(hp.d_inner, hp_.d_inner);  // not 2 * d_model
    EXPECT_EQ(hp.d_state, hp_.d_state);
    EXPECT_EQ(hp.dt_rank, hp_.dt_rank);
    EXPECT_FLOAT_EQ(hp.norm_eps, hp_.norm_eps);
    EXPECT_FALSE(hp.dt_b_c_rms);
    EXPECT_EQ(model->name(), "random-mamba");

    const ModelWeights& w = model->weights();
    EXPECT_FALSE(w.tied_output);
    EXPECT_NE(w.output.data, w.token_embd.data);
    ASSERT_EQ(w.layers.size(), static_cast<size_t>(hp_.n_layer));
    const Mamba1Mixer& l = w.layers[1].mamba1();
    EXPECT_EQ(l.ssm_in.name, "blk.1.ssm_in.weight");
    EXPECT_EQ(l.ssm_in.type, GgmlType::F16);
    EXPECT_EQ(l.ssm_in.row_length(), hp_.d_model);
    EXPECT_EQ(l.ssm_in.n_rows(), 2 * hp_.d_inner);
    EXPECT_EQ(l.ssm_x.n_rows(), hp_.dt_rank + 2 * hp_.d_state);
    EXPECT_EQ(l.conv1d_w.row_length(), hp_.d_conv);
    EXPECT_EQ(l.conv1d_w.n_rows(), hp_.d_inner);
    EXPECT_TRUE(l.conv1d_b.present());
    EXPECT_FALSE(l.ssm_in_b.present());
    EXPECT_FALSE(l.ssm_out_b.present());

    uint64_t all_tensor_bytes = 0;
    for (const GgufTensorInfo& t : model->gguf().tensors()) all_tensor_bytes += t.nbytes;
    EXPECT_EQ(model->weight_bytes(), all_tensor_bytes);
}

TEST_F(ModelLoad, TiedOutputIsTheEmbedding) {
    const TempModelFile tied(hp_, GgmlType::F32, 1, true);
    const auto model = Model::load(tied.path());
    EXPECT_TRUE(model->weights().tied_output);
    EXPECT_EQ(model->weights().output.data, model->weights().token_embd.data);
    EXPECT_EQ(model->weights().output.name, "token_embd.weight");
    EXPECT_EQ(model->gguf().find_tensor("output.weight"), nullptr);
}

TEST_F(ModelLoad, AcceptsThreeDimensionalConvAndOptionalBiases) {
    RandomModelOptions options;
    options.conv_3d = true;
    options.conv_bias = false;
    options.proj_bias = true;
    const TempModelFile file(hp_, GgmlType::BF16, 1, true, options);
    const auto model = Model::load(file.path());
    const Mamba1Mixer& l = model->weights().layers[0].mamba1();
    EXPECT_EQ(l.conv1d_w.ne, (std::array<int64_t, 4>{hp_.d_conv, hp_.d_inner, 1, 1}));
    EXPECT_FALSE(l.conv1d_b.present());
    EXPECT_TRUE(l.ssm_in_b.present());
    EXPECT_TRUE(l.ssm_out_b.present());
}

TEST_F(ModelLoad, AcceptsAnyIntegerWidthAndReadsFalconKeys) {
    const std::string path = dir_.file("widths.gguf");
    rewrite(
        file_.path(), path,
        [](const std::string& key, const GgufValue& v) -> std::optional<GgufValue> {
            if (key == "mamba.block_count") return GgufValue::u64(3);
            if (key == "mamba.ssm.state_size") return GgufValue::i16(6);
            if (key == "mamba.ssm.conv_kernel") return GgufValue::u8(4);
            if (key == "mamba.ssm.dt_b_c_rms") return GgufValue::boolean(true);
            if (key == "mamba.attention.layer_norm_rms_epsilon") return GgufValue::f64(1e-6);
            return v;
        },
        {}, {{kMixerRmsEpsKey, GgufValue::f32(3e-6f)}});
    const auto model = Model::load(path);
    EXPECT_EQ(model->hparams().n_layer, 3);
    EXPECT_EQ(model->hparams().d_state, 6);
    EXPECT_EQ(model->hparams().d_conv, 4);
    EXPECT_TRUE(model->hparams().dt_b_c_rms);
    EXPECT_FLOAT_EQ(model->hparams().norm_eps, 1e-6f);
    EXPECT_FLOAT_EQ(model->hparams().mixer_rms_eps, 3e-6f);
}

TEST_F(ModelLoad, MixerEpsilonDefaultsToHfValue) {
    EXPECT_FLOAT_EQ(Model::load(file_.path())->hparams().mixer_rms_eps, 1e-6f);
}

TEST_F(ModelLoad, WrongArchitectureIsNamed) {
    const std::string message = load_error(
        [](const std::string& key, const GgufValue& v) {
            return key == "general.architecture" ? GgufValue::string("llama") : v;
        },
        {});
    EXPECT_NE(message.find("'llama'"), std::string::npos) << message;
    EXPECT_NE(message.find("mamba"), std::string::npos) << message;
}

TEST_F(ModelLoad, MissingArchitectureIsAnError) {
    const std::string message = load_error(
        [](const std::string& key, const GgufValue& v) -> std::optional<GgufValue> {
            if (key == "general.architecture") return std::nullopt;
            return v;
        },
        {});
    EXPECT_NE(message.find("general.architecture"), std::string::npos) << message;
}

TEST_F(ModelLoad, MissingKeyIsNamed) {
    for (const char* missing :
         {"mamba.ssm.inner_size", "mamba.attention.layer_norm_rms_epsilon", "mamba.block_count"}) {
        const std::string message = load_error(
            [&](const std::string& key, const GgufValue& v) -> std::optional<GgufValue> {
                if (key == missing) return std::nullopt;
                return v;
            },
            {});
        EXPECT_NE(message.find(missing), std::string::npos) << message;
    }
}

TEST_F(ModelLoad, BadKeyValuesAreNamed) {
    const std::string zero = load_error(
        [](const std::string& key, const GgufValue& v) {
            return key == "mamba.ssm.state_size" ? GgufValue::u32(0) : v;
        },
        {});
    EXPECT_NE(zero.find("mamba.ssm.state_size"), std::string::npos) << zero;
    const std::string wrong_type = load_error(
        [](const std::string& key, const GgufValue& v) {
            return key == "mamba.embedding_length" ? GgufValue::string("44") : v;
        },
        {});
    EXPECT_NE(wrong_type.find("mamba.embedding_length"), std::string::npos) << wrong_type;
    const std::string negative_eps = load_error(
        [](const std::string& key, const GgufValue& v) {
            return key == "mamba.attention.layer_norm_rms_epsilon" ? GgufValue::f32(-1.0f) : v;
        },
        {});
    EXPECT_NE(negative_eps.find("layer_norm_rms_epsilon"), std::string::npos) << negative_eps;
}

TEST_F(ModelLoad, MissingTensorIsNamed) {
    for (const char* missing : {"blk.2.ssm_dt.bias", "output_norm.weight", "token_embd.weight", "blk.0.ssm_a"}) {
        const std::string message =
            load_error({}, [&](const std::string& name, TensorEdit&) { return name != missing; });
        EXPECT_NE(message.find(missing), std::string::npos) << message;
    }
}

// block_count sized the layer list before any tensor was looked at: 2^31 layers asked for terabytes and
// failed as "out of memory". Now the first layer the file lacks is named.
TEST_F(ModelLoad, BlockCountBeyondTheFileNamesTheFirstMissingTensor) {
    constexpr uint32_t kHugeBlockCount = uint32_t{1} << 31;
    const std::string message = load_error(
        [](const std::string& key, const GgufValue& v) {
            return key == "mamba.block_count" ? GgufValue::u32(kHugeBlockCount) : v;
        },
        {});
    EXPECT_NE(message.find(concat("blk.", hp_.n_layer, ".attn_norm.weight is missing")), std::string::npos)
        << message;
}

TEST_F(ModelLoad, WrongShapeIsNamed) {
    const std::string message = load_error({}, [&](const std::string& name, TensorEdit& e) {
        if (name == "blk.1.ssm_x.weight") e.ne = {hp_.d_inner, hp_.dt_rank + 2 * hp_.d_state + 1};
        return true;
    });
    EXPECT_NE(message.find("blk.1.ssm_x.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("expected"), std::string::npos) << message;

    const std::string conv = load_error({}, [&](const std::string& name, TensorEdit& e) {
        if (name == "blk.0.ssm_conv1d.weight") e.ne = {hp_.d_conv, 2, hp_.d_inner};
        return true;
    });
    EXPECT_NE(conv.find("blk.0.ssm_conv1d.weight"), std::string::npos) << conv;
}

TEST_F(ModelLoad, UnsupportedTypeIsNamed) {
    const std::string matrix_i8 = load_error({}, [&](const std::string& name, TensorEdit& e) {
        if (name == "blk.0.ssm_in.weight") e.type = GgmlType::I8;
        return true;
    });
    EXPECT_NE(matrix_i8.find("blk.0.ssm_in.weight"), std::string::npos) << matrix_i8;
    EXPECT_NE(matrix_i8.find(ggml_type_name(GgmlType::I8)), std::string::npos) << matrix_i8;

    const std::string norm_i32 = load_error({}, [&](const std::string& name, TensorEdit& e) {
        if (name == "output_norm.weight") e.type = GgmlType::I32;
        return true;
    });
    EXPECT_NE(norm_i32.find("output_norm.weight"), std::string::npos) << norm_i32;
}

TEST_F(ModelLoad, RandomModelByteTokenizerEncodesBytes) {
    RandomModelOptions options;
    options.byte_tokenizer = true;
    ModelHparams hp = hp_;
    hp.n_vocab = 260;
    const TempModelFile file(hp, GgmlType::F32, 1, true, options);
    const auto model = Model::load(file.path());
    const auto tokenizer = Tokenizer::from_gguf(model->gguf());
    EXPECT_EQ(tokenizer->n_vocab(), 260);
    EXPECT_EQ(tokenizer->eos(), 259);
    const std::string text = "Hi \xC3\xA9\n";  // bytes 'H' 'i' ' ' 0xC3 0xA9 '\n'
    const std::vector<int32_t> ids = tokenizer->encode(text, false);
    EXPECT_EQ(ids, (std::vector<int32_t>{'H', 'i', ' ', 0xC3, 0xA9, '\n'}));
    EXPECT_EQ(tokenizer->decode(ids), text);
}

TEST_F(ModelLoad, NonexistentFileIsAnError) {
    EXPECT_THROW(Model::load(dir_.file("absent.gguf")), Error);
}

// llama.cpp's architecture "mamba2".
ModelHparams tiny_mamba2_hparams() {
    ModelHparams hp = test::tiny_hparams_any_length();
    hp.arch = Architecture::Mamba2;
    hp.dt_rank = 0;
    hp.n_head = 6;
    hp.head_dim = 5;
    hp.n_group = 3;
    hp.d_inner = hp.n_head * hp.head_dim;
    hp.time_step_min = 0.001f;
    hp.time_step_max = 0.1f;
    return hp;
}

class Mamba2ModelLoad : public ModelLoad {
protected:
    Mamba2ModelLoad() : ModelLoad(tiny_mamba2_hparams()) {}
    static KvEdit set_key(const std::string& name, const GgufValue& value) {
        return [=](const std::string& key, const GgufValue& v) { return key == name ? value : v; };
    }
};

TEST_F(Mamba2ModelLoad, ReadsHyperParametersAndTensors) {
    const auto model = Model::load(file_.path());
    const ModelHparams& hp = model->hparams();
    EXPECT_EQ(hp.arch, Architecture::Mamba2);
    EXPECT_EQ(hp.n_head, 6);
    EXPECT_EQ(hp.head_dim, 5);
    EXPECT_EQ(hp.n_group, 3);
    EXPECT_FLOAT_EQ(hp.time_step_min, 0.001f);
    EXPECT_FLOAT_EQ(hp.time_step_max, 0.1f);
    EXPECT_EQ(hp.conv_channels(), hp.d_inner + 2 * 3 * hp.d_state);
    const Mamba2Mixer& m = model->weights().layers[1].mamba2();
    EXPECT_EQ(m.ssm_in.n_rows(), 2 * hp.d_inner + 2 * 3 * hp.d_state + 6);
    EXPECT_EQ(m.ssm_a.ne, (std::array<int64_t, 4>{6, 1, 1, 1}));  // {1, n_head} in the file
    EXPECT_EQ(m.ssm_norm.ne, (std::array<int64_t, 4>{hp.d_inner, 1, 1, 1}));
    EXPECT_EQ(m.conv1d_w.n_rows(), hp.conv_channels());
    EXPECT_FALSE(m.ssm_in_b.present());
    uint64_t all_tensor_bytes = 0;
    for (const GgufTensorInfo& t : model->gguf().tensors()) all_tensor_bytes += t.nbytes;
    EXPECT_EQ(model->weight_bytes(), all_tensor_bytes);
}

TEST_F(Mamba2ModelLoad, AcceptsFlatVectorsAndNoTimeStepLimit) {
    const std::string path = dir_.file("flat.gguf");
    rewrite(
        file_.path(), path,
        [](const std::string& key, const GgufValue& v) -> std::optional<GgufValue> {
            if (key == kTimeStepMinKey || key == kTimeStepMaxKey) return std::nullopt;
            return v;
        },
        [&](const std::string& name, TensorEdit& e) {
            if (name.ends_with("ssm_a") || name.ends_with("ssm_d")) e.ne = {hp_.n_head};
            if (name.ends_with("ssm_norm.weight")) e.ne = {hp_.d_inner};
            return true;
        });
    const auto model = Model::load(path);
    EXPECT_EQ(model->hparams().time_step_min, 0.0f);
    EXPECT_TRUE(std::isinf(model->hparams().time_step_max));
}

TEST_F(Mamba2ModelLoad, InconsistentHeadsAndGroupsAreNamed) {
    const std::string heads = load_error(set_key("mamba2.ssm.time_step_rank", GgufValue::u32(7)), {});
    EXPECT_NE(heads.find("not a multiple of the head count"), std::string::npos) << heads;
    // 6 heads, 4 groups: heads do not split into groups (and the tensors' shapes no longer fit either).
    const std::string groups = load_error(set_key("mamba2.ssm.group_count", GgufValue::u32(4)), {});
    EXPECT_NE(groups.find("mamba2.ssm.group_count"), std::string::npos) << groups;
    const std::string missing = load_error(
        [](const std::string& key, const GgufValue& v) -> std::optional<GgufValue> {
            if (key == "mamba2.ssm.group_count") return std::nullopt;
            return v;
        },
        {});
    EXPECT_NE(missing.find("mamba2.ssm.group_count is missing"), std::string::npos) << missing;
}

TEST_F(Mamba2ModelLoad, BadTimeStepLimitsAreNamed) {
    for (const auto& [key, value] : {std::pair{kTimeStepMinKey, GgufValue::f32(std::numeric_limits<float>::quiet_NaN())},
                                     std::pair{kTimeStepMinKey, GgufValue::f32(-1.0f)},
                                     std::pair{kTimeStepMaxKey, GgufValue::f32(0.0001f)}}) {
        const std::string message = load_error(set_key(key, value), {});
        EXPECT_NE(message.find("dendro.ssm.time_step_m"), std::string::npos) << message;
    }
}

TEST_F(Mamba2ModelLoad, WrongShapesAreNamedWithWhatIsExpected) {
    const std::string in_proj = load_error({}, [&](const std::string& name, TensorEdit& e) {
        if (name == "blk.1.ssm_in.weight") e.ne[1] -= 1;
        return true;
    });
    EXPECT_NE(in_proj.find("blk.1.ssm_in.weight"), std::string::npos) << in_proj;
    const std::string norm = load_error({}, [&](const std::string& name, TensorEdit& e) {
        if (name == "blk.0.ssm_norm.weight") e.ne = {hp_.d_inner / 2, 2};
        return true;
    });
    EXPECT_NE(norm.find("blk.0.ssm_norm.weight"), std::string::npos) << norm;
    EXPECT_NE(norm.find(concat("{", hp_.d_inner / 3, ", 3} or {", hp_.d_inner, "}")), std::string::npos) << norm;
    const std::string missing = load_error({}, [&](const std::string& name, TensorEdit&) {
        return name != "blk.1.ssm_norm.weight";
    });
    EXPECT_NE(missing.find("blk.1.ssm_norm.weight is missing"), std::string::npos) << missing;
}

}  // namespace
}  // namespace dendro
