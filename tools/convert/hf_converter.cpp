#include "hf_converter.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "common/error.h"
#include "cpu/thread_pool.h"
#include "cpu/topology.h"
#include "format/gguf.h"
#include "hf_config.h"
#include "hf_mamba2.h"
#include "hf_tokenizer.h"
#include "mamba_ssm_checkpoint.h"
#include "parallel_rows.h"
#include "model/model.h"
#include "safetensors.h"

namespace dendro {
namespace {

constexpr const char* kGgufArchitecture = "mamba";
// llama.cpp's converter writes an arbitrary 2^20 (a recurrent model has no context limit); so do we.
constexpr uint32_t kContextLength = 1u << 20;
constexpr uint32_t kQuantizationVersion = 2;  // ggml's GGML_QNT_VERSION

enum class Transform { None, NegativeExp };

// One output tensor: where its data comes from and how it is stored.
struct TensorPlan {
    std::string name;
    const SafetensorsTensor* source = nullptr;
    GgmlType source_type = GgmlType::F32;
    std::vector<int64_t> ne;  // ggml order
    GgmlType type = GgmlType::F32;
    Transform transform = Transform::None;
};

GgmlType safetensors_float_type(const SafetensorsTensor& t) {
    if (t.dtype == "F32") return GgmlType::F32;
    if (t.dtype == "F16") return GgmlType::F16;
    if (t.dtype == "BF16") return GgmlType::BF16;
    fail("tensor '", t.name, "' in ", t.file, " has dtype ", t.dtype, "; only F32, F16 and BF16 weights are supported");
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Maps HF tensors to GGUF ones, checking each against the shape config.json implies.
class TensorPlanner {
public:
    explicit TensorPlanner(const CheckpointTensors& checkpoint) : checkpoint_(checkpoint) {}

    const SafetensorsTensor* find(const std::string& hf_name) const { return checkpoint_.find(hf_name); }

    const SafetensorsTensor& require(const std::string& hf_name, const std::vector<int64_t>& hf_shape) {
        const SafetensorsTensor* t = checkpoint_.find(hf_name);
        if (!t) fail("checkpoint has no tensor '", hf_name, "' (expected ", shape_text(hf_shape), " from config.json)");
        return check(*t, hf_shape);
    }

    // A tensor that must be present exactly when `expected` (a config.json flag) says so.
    const SafetensorsTensor* expect(const std::string& hf_name, const std::vector<int64_t>& hf_shape, bool expected,
                                    const char* flag) {
        const SafetensorsTensor* t = checkpoint_.find(hf_name);
        if (expected && !t) fail("checkpoint has no tensor '", hf_name, "' although config.json sets ", flag, " true");
        if (!expected && t) fail("checkpoint has tensor '", hf_name, "' although config.json sets ", flag, " false");
        return t ? &check(*t, hf_shape) : nullptr;
    }

    void mark_used(const SafetensorsTensor& t) { used_.insert(t.name); }

    // A large matrix. `ne` is the GGUF shape (ggml order). Every tensor's storage type is chosen from its
    // name and shape once the plan is complete (assign_types).
    void add_matrix(std::string name, const SafetensorsTensor& source, std::vector<int64_t> ne) {
        add(std::move(name), source, std::move(ne), Transform::None);
    }
    // Norms, biases, SSM parameters and the conv1d weight (F32 by tensor_types.h's rules).
    void add_f32(std::string name, const SafetensorsTensor& source, std::vector<int64_t> ne,
                 Transform transform = Transform::None) {
        add(std::move(name), source, std::move(ne), transform);
    }

    void assign_types(OutType out_type, bool output_tied) {
        for (TensorPlan& plan : plans_) plan.type = tensor_storage_type(plan.name, plan.ne, out_type, output_tied);
    }

    // Throws for any checkpoint tensor nothing was planned for (the checkpoint is not the model config.json
    // describes, e.g. more layers).
    void check_all_used() const {
        for (const SafetensorsTensor* t : checkpoint_.tensors()) {
            if (!used_.count(t->name)) {
                fail("unexpected tensor '", t->name, "' ", t->shape_string(), " in ", t->file,
                     " (not part of the model config.json describes)");
            }
        }
    }

    std::vector<TensorPlan>& plans() { return plans_; }

private:
    const SafetensorsTensor& check(const SafetensorsTensor& t, const std::vector<int64_t>& hf_shape) {
        if (t.shape != hf_shape) {
            fail("tensor '", t.name, "' in ", t.file, " has shape ", t.shape_string(), ", expected ",
                 shape_text(hf_shape), " from config.json");
        }
        safetensors_float_type(t);
        return t;
    }

    void add(std::string name, const SafetensorsTensor& source, std::vector<int64_t> ne, Transform transform) {
        mark_used(source);
        plans_.push_back({std::move(name), &source, safetensors_float_type(source), std::move(ne), GgmlType::F32,
                          transform});
    }

    const CheckpointTensors& checkpoint_;
    std::set<std::string> used_;
    std::vector<TensorPlan> plans_;
};

std::string layer_name(int64_t il, const char* suffix) { return concat("blk.", il, ".", suffix); }

// The output matrix; returns whether it is tied to (omitted in favour of) the token embedding. HF ties
// lm_head to the embedding when tie_word_embeddings is set (a stored lm_head is then ignored); llama.cpp also
// drops an untied lm_head identical to the embedding.
bool plan_output_matrix(bool tie_word_embeddings, const SafetensorsTensor& embd, int64_t n_vocab, int64_t d_model,
                        TensorPlanner& planner) {
    const SafetensorsTensor* lm_head = planner.find(kHfLmHeadName);
    if (tie_word_embeddings) {
        if (lm_head) planner.mark_used(*lm_head);
        return true;
    }
    if (!lm_head) fail("checkpoint has no tensor 'lm_head.weight' although config.json sets tie_word_embeddings false");
    const SafetensorsTensor& head = planner.require(kHfLmHeadName, {n_vocab, d_model});
    if (head.dtype == embd.dtype && head.data.size() == embd.data.size() &&
        std::memcmp(head.data.data(), embd.data.data(), embd.data.size()) == 0) {
        planner.mark_used(head);
        return true;
    }
    planner.add_matrix("output.weight", head, {d_model, n_vocab});
    return false;
}

// Returns whether the output matrix is tied to (omitted in favour of) the token embedding.
bool plan_tensors(const HfMambaConfig& cfg, TensorPlanner& planner) {
    const int64_t d_model = cfg.hidden_size, d_inner = cfg.intermediate_size, d_state = cfg.state_size;
    const int64_t d_conv = cfg.conv_kernel, dt_rank = cfg.time_step_rank, n_vocab = cfg.vocab_size;

    // mamba_ssm checkpoints say "embedding", transformers' say "embeddings".
    const std::string embd_name =
        planner.find("backbone.embedding.weight") ? "backbone.embedding.weight" : "backbone.embeddings.weight";
    const SafetensorsTensor& embd = planner.require(embd_name, {n_vocab, d_model});
    planner.add_matrix("token_embd.weight", embd, {d_model, n_vocab});

    for (int64_t il = 0; il < cfg.n_layer; ++il) {
        const std::string p = concat("backbone.layers.", il, ".");
        const std::string m = p + "mixer.";
        planner.add_f32(layer_name(il, "attn_norm.weight"), planner.require(p + "norm.weight", {d_model}), {d_model});
        planner.add_matrix(layer_name(il, "ssm_in.weight"), planner.require(m + "in_proj.weight", {2 * d_inner, d_model}),
                           {d_model, 2 * d_inner});
        if (const auto* b = planner.expect(m + "in_proj.bias", {2 * d_inner}, cfg.use_bias, "use_bias")) {
            planner.add_f32(layer_name(il, "ssm_in.bias"), *b, {2 * d_inner});
        }
        // [d_inner, 1, d_conv] -> {d_conv, d_inner}: the depthwise conv's singleton axis is dropped.
        planner.add_f32(layer_name(il, "ssm_conv1d.weight"), planner.require(m + "conv1d.weight", {d_inner, 1, d_conv}),
                        {d_conv, d_inner});
        if (const auto* b = planner.expect(m + "conv1d.bias", {d_inner}, cfg.use_conv_bias, "use_conv_bias")) {
            planner.add_f32(layer_name(il, "ssm_conv1d.bias"), *b, {d_inner});
        }
        planner.add_matrix(layer_name(il, "ssm_x.weight"),
                           planner.require(m + "x_proj.weight", {dt_rank + 2 * d_state, d_inner}),
                           {d_inner, dt_rank + 2 * d_state});
        planner.add_matrix(layer_name(il, "ssm_dt.weight"), planner.require(m + "dt_proj.weight", {d_inner, dt_rank}),
                           {dt_rank, d_inner});
        planner.add_f32(layer_name(il, "ssm_dt.bias"), planner.require(m + "dt_proj.bias", {d_inner}), {d_inner});
        planner.add_f32(layer_name(il, "ssm_a"), planner.require(m + "A_log", {d_inner, d_state}), {d_state, d_inner},
                        Transform::NegativeExp);
        planner.add_f32(layer_name(il, "ssm_d"), planner.require(m + "D", {d_inner}), {d_inner});
        planner.add_matrix(layer_name(il, "ssm_out.weight"), planner.require(m + "out_proj.weight", {d_model, d_inner}),
                           {d_inner, d_model});
        if (const auto* b = planner.expect(m + "out_proj.bias", {d_model}, cfg.use_bias, "use_bias")) {
            planner.add_f32(layer_name(il, "ssm_out.bias"), *b, {d_model});
        }
    }
    planner.add_f32("output_norm.weight", planner.require("backbone.norm_f.weight", {d_model}), {d_model});
    return plan_output_matrix(cfg.tie_word_embeddings, embd, n_vocab, d_model, planner);
}

// Mamba-2: the tensors hf_mamba2.h maps, then the output matrix.
bool plan_mamba2_tensors(const HfMamba2Config& cfg, TensorPlanner& planner) {
    for (const HfTensorMapping& m : hf_mamba2_tensor_mappings(cfg)) {
        const SafetensorsTensor* source =
            m.flag ? planner.expect(m.hf_name, m.hf_shape, m.flag_value, m.flag) : &planner.require(m.hf_name, m.hf_shape);
        if (!source) continue;
        if (m.matrix) {
            planner.add_matrix(m.gguf_name, *source, m.ne);
        } else {
            planner.add_f32(m.gguf_name, *source, m.ne, m.negative_exp ? Transform::NegativeExp : Transform::None);
        }
    }
    const SafetensorsTensor& embd = planner.require(kHfMamba2EmbeddingName, {cfg.vocab_size, cfg.hidden_size});
    return plan_output_matrix(cfg.tie_word_embeddings, embd, cfg.vocab_size, cfg.hidden_size, planner);
}

// Converts one tensor row by row into `out`, the rows shared among the pool's threads. Source rows are
// copied out of the mapping first: safetensors data need not be aligned for its element type.
void produce_tensor(const TensorPlan& plan, ThreadPool& pool, std::vector<uint8_t>& out) {
    const int64_t row_length = plan.ne[0];
    int64_t n_rows = 1;
    for (size_t i = 1; i < plan.ne.size(); ++i) n_rows *= plan.ne[i];
    const size_t source_row_bytes = ggml_row_size(plan.source_type, row_length);
    const size_t out_row_bytes = ggml_row_size(plan.type, row_length);
    out.resize(out_row_bytes * static_cast<size_t>(n_rows));
    fill_rows_in_parallel(pool, n_rows, row_length, [&](int64_t row_begin, int64_t row_end) {
        std::vector<uint8_t> source_row(source_row_bytes);
        std::vector<float> values(static_cast<size_t>(row_length));
        for (int64_t r = row_begin; r < row_end; ++r) {
            std::memcpy(source_row.data(), plan.source->data.data() + static_cast<size_t>(r) * source_row_bytes,
                        source_row_bytes);
            dequantize_row(plan.source_type, source_row.data(), values.data(), row_length);
            if (plan.transform == Transform::NegativeExp) {
                for (float& v : values) v = -std::exp(v);
            }
            quantize_row(plan.type, values.data(), out.data() + static_cast<size_t>(r) * out_row_bytes, row_length);
        }
    });
}

// The keys llama.cpp's converter writes for every Mamba architecture.
void set_common_metadata(const std::string& arch, const std::string& name, int64_t d_model, int64_t n_layer,
                         OutType out_type, GgufWriter& writer) {
    writer.set("general.architecture", GgufValue::string(arch));
    writer.set("general.type", GgufValue::string("model"));
    writer.set("general.name", GgufValue::string(name));
    writer.set(arch + ".context_length", GgufValue::u32(kContextLength));
    writer.set(arch + ".embedding_length", GgufValue::u32(static_cast<uint32_t>(d_model)));
    // Unused by Mamba, but llama.cpp's converter writes them and its loader requires them.
    writer.set(arch + ".feed_forward_length", GgufValue::u32(0));
    writer.set(arch + ".attention.head_count", GgufValue::u32(0));
    writer.set(arch + ".block_count", GgufValue::u32(static_cast<uint32_t>(n_layer)));
    writer.set("general.file_type", GgufValue::u32(out_type_file_type(out_type)));
}

void set_metadata(const HfMambaConfig& cfg, OutType out_type, const std::string& name, GgufWriter& writer) {
    const std::string arch = kGgufArchitecture;
    auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
    set_common_metadata(arch, name, cfg.hidden_size, cfg.n_layer, out_type, writer);
    writer.set(arch + ".ssm.conv_kernel", u32(cfg.conv_kernel));
    writer.set(arch + ".ssm.inner_size", u32(cfg.intermediate_size));
    writer.set(arch + ".ssm.state_size", u32(cfg.state_size));
    writer.set(arch + ".ssm.time_step_rank", u32(cfg.time_step_rank));
    writer.set(arch + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(cfg.layer_norm_epsilon)));
    writer.set(arch + ".ssm.dt_b_c_rms", GgufValue::boolean(cfg.dt_b_c_rms));
    if (cfg.dt_b_c_rms) writer.set(kMixerRmsEpsKey, GgufValue::f32(static_cast<float>(cfg.mixer_rms_eps)));
}

std::string model_name(const std::string& model_dir) {
    const std::filesystem::path dir = std::filesystem::weakly_canonical(std::filesystem::path(model_dir));
    const std::string name = dir.filename().string();
    return name.empty() ? dir.string() : name;
}

// The tokenizer and the planned tensors into `writer`, then the file.
void write_gguf(const ConvertOptions& options, int64_t n_vocab, const std::vector<TensorPlan>& plans,
                GgufWriter& writer, ConvertSummary& summary) {
    add_hf_tokenizer(options.vocab_dir.empty() ? options.model_dir : options.vocab_dir, n_vocab, writer, options.warn);
    writer.set("general.quantization_version", GgufValue::u32(kQuantizationVersion));
    ThreadPool pool(default_thread_count());  // the tensors are produced inside writer.write below
    for (const TensorPlan& plan : plans) {
        summary.n_params += plan.source->n_elements();
        writer.add_tensor(plan.name, plan.type, plan.ne,
                          [&plan, &pool](std::vector<uint8_t>& out) { produce_tensor(plan, pool, out); });
    }
    summary.n_tensors = static_cast<int64_t>(plans.size());
    writer.write(options.output_path, options.progress);
    summary.output_bytes = std::filesystem::file_size(options.output_path);
}

// HF Mamba2ForCausalLM -> llama.cpp's "mamba2" (see hf_mamba2.h).
ConvertSummary convert_hf_mamba2_to_gguf(const ConvertOptions& options) {
    if (options.output_path.empty()) fail("no output path given");
    const HfMamba2Config config = read_mamba2_config_any_layout(options.model_dir);
    const std::unique_ptr<CheckpointTensors> checkpoint = open_checkpoint_tensors(options.model_dir);

    TensorPlanner planner(*checkpoint);
    ConvertSummary summary;
    summary.tied_output = plan_mamba2_tensors(config, planner);
    planner.check_all_used();
    planner.assign_types(options.out_type, summary.tied_output);

    GgufWriter writer;
    set_common_metadata(architecture_name(Architecture::Mamba2), model_name(options.model_dir), config.hidden_size,
                        config.n_layer, options.out_type, writer);
    set_hf_mamba2_metadata(config, writer);
    write_gguf(options, config.vocab_size, planner.plans(), writer, summary);
    return summary;
}

}  // namespace

ConvertSummary convert_hf_to_gguf(const ConvertOptions& options) {
    if (is_mamba2_checkpoint_any_layout(options.model_dir)) return convert_hf_mamba2_to_gguf(options);
    if (options.output_path.empty()) fail("no output path given");
    const HfMambaConfig config = read_mamba_config_any_layout(options.model_dir);
    const std::unique_ptr<CheckpointTensors> checkpoint = open_checkpoint_tensors(options.model_dir);

    TensorPlanner planner(*checkpoint);
    ConvertSummary summary;
    summary.tied_output = plan_tensors(config, planner);
    planner.check_all_used();
    planner.assign_types(options.out_type, summary.tied_output);

    GgufWriter writer;
    set_metadata(config, options.out_type, model_name(options.model_dir), writer);
    write_gguf(options, config.vocab_size, planner.plans(), writer, summary);
    return summary;
}

}  // namespace dendro
