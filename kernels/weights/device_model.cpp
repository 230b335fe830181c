#include "weights/device_model.h"

#include <cuda_runtime.h>

#include <cstring>
#include <variant>

#include "common/error.h"
#include "runtime/cuda_check.h"

namespace dendro::cuda {

DeviceMatrix upload_matrix(const TensorView& t, std::vector<DeviceBuffer>& storage) {
    DeviceMatrix m;
    m.type = t.type;
    m.cols = t.row_length();
    m.rows = t.n_rows();
    if (t.type != GgmlType::F32 && t.type != GgmlType::F16 && t.type != GgmlType::BF16 && t.type != GgmlType::Q8_0) {
        fail("CUDA backend: tensor ", t.name, " has type ", ggml_type_name(t.type),
             ", which it cannot compute with (F32, F16, BF16 or Q8_0; the CPU backend, --device cpu, reads ",
             ggml_type_name(t.type), ")");
    }
    const std::string purpose = concat("weights of ", t.name);
    if (t.type != GgmlType::Q8_0) {
        m.data = storage.emplace_back(upload(t.data, t.nbytes, purpose)).get();
        return m;
    }
    // Split ggml's 34-byte blocks into a quant plane and a scale plane (see device_matrix.h).
    const int64_t blocks = m.rows * (m.cols / kQ8_0BlockSize);
    std::vector<int8_t> quants(static_cast<size_t>(m.rows * m.cols));
    std::vector<uint16_t> scales(static_cast<size_t>(blocks));
    const auto* src = reinterpret_cast<const BlockQ8_0*>(t.data);
    for (int64_t i = 0; i < blocks; ++i) {
        scales[i] = src[i].d;
        std::memcpy(quants.data() + i * kQ8_0BlockSize, src[i].qs, kQ8_0BlockSize);
    }
    m.data = storage.emplace_back(upload(quants.data(), quants.size(), purpose)).get();
    m.scales = storage.emplace_back(upload(scales.data(), scales.size() * sizeof(uint16_t), purpose)).as<uint16_t>();
    return m;
}

const float* upload_as_f32(const TensorView& t, std::vector<DeviceBuffer>& storage) {
    if (!t.present()) return nullptr;
    std::vector<float> values(static_cast<size_t>(t.row_length() * t.n_rows()));
    for (int64_t r = 0; r < t.n_rows(); ++r) {
        dequantize_row(t.type, t.row(r), values.data() + r * t.row_length(), t.row_length());
    }
    return storage.emplace_back(upload(values.data(), values.size() * sizeof(float), concat("weights of ", t.name)))
        .as<float>();
}

DeviceMatrix DeviceModel::add_matrix(const TensorView& t) {
    const DeviceMatrix m = upload_matrix(t, buffers_);
    bytes_ += m.bytes();
    return m;
}

const float* DeviceModel::add_vector(const TensorView& t) {
    const float* v = upload_as_f32(t, buffers_);
    if (v != nullptr) {
        bytes_ += buffers_.back().bytes();
        bytes_per_token_ += buffers_.back().bytes();
    }
    return v;
}

DeviceLayer DeviceModel::add_mamba2(const LayerWeights& layer) {
    const Mamba2Mixer& l = layer.mamba2();
    DeviceLayer d;
    d.attn_norm = add_vector(layer.attn_norm);
    d.ssm_in = add_matrix(l.ssm_in);
    d.ssm_in_b = add_vector(l.ssm_in_b);
    d.conv_w = add_vector(l.conv1d_w);
    d.conv_b = add_vector(l.conv1d_b);
    d.ssm_dt_b = add_vector(l.ssm_dt_b);
    d.ssm_a = add_vector(l.ssm_a);
    d.ssm_d = add_vector(l.ssm_d);
    d.ssm_norm = add_vector(l.ssm_norm);
    d.ssm_out = add_matrix(l.ssm_out);
    d.ssm_out_b = add_vector(l.ssm_out_b);
    bytes_per_token_ += d.ssm_in.bytes() + d.ssm_out.bytes();
    return d;
}

DeviceModel::DeviceModel(const Model& model) {
    const ModelWeights& w = model.weights();
    token_embd_ = add_matrix(w.token_embd);
    output_ = w.tied_output ? token_embd_ : add_matrix(w.output);
    output_norm_ = add_vector(w.output_norm);
    bytes_per_token_ += output_.bytes() + token_embd_.bytes() / static_cast<uint64_t>(token_embd_.rows);
    layers_.reserve(w.layers.size());
    for (const LayerWeights& layer : w.layers) {
        if (std::holds_alternative<Mamba2Mixer>(layer.mixer)) {
            layers_.push_back(add_mamba2(layer));
            continue;
        }
        const Mamba1Mixer& l = layer.mamba1();
        DeviceLayer d;
        d.attn_norm = add_vector(layer.attn_norm);
        d.ssm_in = add_matrix(l.ssm_in);
        d.ssm_in_b = add_vector(l.ssm_in_b);
        d.conv_w = add_vector(l.conv1d_w);
        d.conv_b = add_vector(l.conv1d_b);
        d.ssm_x = add_matrix(l.ssm_x);
        d.ssm_dt = add_matrix(l.ssm_dt_w);
        d.ssm_dt_b = add_vector(l.ssm_dt_b);
        d.ssm_a = add_vector(l.ssm_a);
        d.ssm_d = add_vector(l.ssm_d);
        d.ssm_out = add_matrix(l.ssm_out);
        d.ssm_out_b = add_vector(l.ssm_out_b);
        bytes_per_token_ += d.ssm_in.bytes() + d.ssm_x.bytes() + d.ssm_dt.bytes() + d.ssm_out.bytes();
        layers_.push_back(d);
    }
    // The uploads ran on the legacy default stream, and a pageable cudaMemcpy may return before its DMA has
    // landed; the backend computes on a non-blocking stream, which does not wait for the default stream. So
    // the weights are complete on the device before any kernel can read them.
    check(cudaDeviceSynchronize(), "finishing the upload of the model's weights");
}

}  // namespace dendro::cuda
