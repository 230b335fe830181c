#include "device_model.h"

#include <cuda_runtime.h>

#include <cstring>

#include "cuda_check.h"
#include "error.h"

namespace dendro::cuda {

DeviceMatrix DeviceModel::upload_matrix(const TensorView& t) {
    DeviceMatrix m;
    m.type = t.type;
    m.cols = t.row_length();
    m.rows = t.n_rows();
    if (t.type != GgmlType::F32 && t.type != GgmlType::F16 && t.type != GgmlType::BF16 && t.type != GgmlType::Q8_0) {
        fail("CUDA backend: tensor ", t.name, " has type ", ggml_type_name(t.type),
             ", which it cannot compute with (F32, F16, BF16 or Q8_0)");
    }
    const std::string purpose = concat("weights of ", t.name);
    if (t.type != GgmlType::Q8_0) {
        DeviceBuffer& buffer = buffers_.emplace_back(t.nbytes, purpose);
        check(cudaMemcpy(buffer.get(), t.data, t.nbytes, cudaMemcpyHostToDevice), concat("uploading ", t.name));
        m.data = buffer.get();
    } else {
        // Split ggml's 34-byte blocks into a quant plane and a scale plane (see device_matrix.h).
        const int64_t blocks = m.rows * (m.cols / kQ8_0BlockSize);
        std::vector<int8_t> quants(static_cast<size_t>(m.rows * m.cols));
        std::vector<uint16_t> scales(static_cast<size_t>(blocks));
        const auto* src = reinterpret_cast<const BlockQ8_0*>(t.data);
        for (int64_t i = 0; i < blocks; ++i) {
            scales[i] = src[i].d;
            std::memcpy(quants.data() + i * kQ8_0BlockSize, src[i].qs, kQ8_0BlockSize);
        }
        DeviceBuffer& q = buffers_.emplace_back(quants.size(), purpose);
        check(cudaMemcpy(q.get(), quants.data(), quants.size(), cudaMemcpyHostToDevice), concat("uploading ", t.name));
        DeviceBuffer& s = buffers_.emplace_back(scales.size() * sizeof(uint16_t), purpose);
        check(cudaMemcpy(s.get(), scales.data(), s.bytes(), cudaMemcpyHostToDevice), concat("uploading ", t.name));
        m.data = q.get();
        m.scales = s.as<uint16_t>();
    }
    bytes_ += m.bytes();
    return m;
}

const float* DeviceModel::upload_vector(const TensorView& t) {
    if (!t.present()) return nullptr;
    std::vector<float> values(static_cast<size_t>(t.row_length() * t.n_rows()));
    for (int64_t r = 0; r < t.n_rows(); ++r) {
        dequantize_row(t.type, t.row(r), values.data() + r * t.row_length(), t.row_length());
    }
    DeviceBuffer& buffer = buffers_.emplace_back(values.size() * sizeof(float), concat("weights of ", t.name));
    check(cudaMemcpy(buffer.get(), values.data(), buffer.bytes(), cudaMemcpyHostToDevice), concat("uploading ", t.name));
    bytes_ += buffer.bytes();
    bytes_per_token_ += buffer.bytes();
    return buffer.as<float>();
}

DeviceModel::DeviceModel(const MambaModel& model) {
    const MambaWeights& w = model.weights();
    token_embd_ = upload_matrix(w.token_embd);
    output_ = w.tied_output ? token_embd_ : upload_matrix(w.output);
    output_norm_ = upload_vector(w.output_norm);
    bytes_per_token_ += output_.bytes() + token_embd_.bytes() / static_cast<uint64_t>(token_embd_.rows);
    layers_.reserve(w.layers.size());
    for (const MambaLayerWeights& l : w.layers) {
        DeviceLayer d;
        d.attn_norm = upload_vector(l.attn_norm);
        d.ssm_in = upload_matrix(l.ssm_in);
        d.ssm_in_b = upload_vector(l.ssm_in_b);
        d.conv_w = upload_vector(l.conv1d_w);
        d.conv_b = upload_vector(l.conv1d_b);
        d.ssm_x = upload_matrix(l.ssm_x);
        d.ssm_dt = upload_matrix(l.ssm_dt_w);
        d.ssm_dt_b = upload_vector(l.ssm_dt_b);
        d.ssm_a = upload_vector(l.ssm_a);
        d.ssm_d = upload_vector(l.ssm_d);
        d.ssm_out = upload_matrix(l.ssm_out);
        d.ssm_out_b = upload_vector(l.ssm_out_b);
        bytes_per_token_ += d.ssm_in.bytes() + d.ssm_x.bytes() + d.ssm_dt.bytes() + d.ssm_out.bytes();
        layers_.push_back(d);
    }
}

}  // namespace dendro::cuda
