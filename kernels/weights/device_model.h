// A Model's weights copied to the device: matrices in their loaded type (see device_matrix.h), the small
// per-layer vectors (norms, biases, conv taps, A, D) as fp32.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/device_buffer.h"
#include "weights/device_matrix.h"
#include "model/model.h"

namespace dendro::cuda {

// Mamba-2 leaves ssm_x and ssm_dt empty, its conv covers xBC ([conv_channels][d_conv]) and its ssm_dt_b,
// ssm_a and ssm_d hold one value per head.
struct DeviceLayer {
    const float* attn_norm = nullptr;
    DeviceMatrix ssm_in;
    const float* ssm_in_b = nullptr;  // null when absent
    const float* conv_w = nullptr;    // [d_inner][d_conv]
    const float* conv_b = nullptr;    // null when absent
    DeviceMatrix ssm_x;
    DeviceMatrix ssm_dt;
    const float* ssm_dt_b = nullptr;
    const float* ssm_a = nullptr;     // [d_inner][d_state]
    const float* ssm_d = nullptr;
    DeviceMatrix ssm_out;
    const float* ssm_out_b = nullptr;
    const float* ssm_norm = nullptr;  // Mamba-2 only: the gated RMSNorm's weight, [d_inner]
};

// Copies one matrix tensor to the device (repacking Q8_0); the memory joins `storage`. Throws naming the tensor
// when its type is not F32, F16, BF16 or Q8_0.
DeviceMatrix upload_matrix(const TensorView& t, std::vector<DeviceBuffer>& storage);
// Copies a vector (or small matrix) tensor to the device as fp32; null for an absent optional tensor.
const float* upload_as_f32(const TensorView& t, std::vector<DeviceBuffer>& storage);

class DeviceModel {
public:
    // Uploads every weight; throws dendro::Error naming the tensor on an unsupported type or when device
    // memory runs out.
    explicit DeviceModel(const Model& model);

    const DeviceMatrix& token_embd() const { return token_embd_; }
    const DeviceMatrix& output() const { return output_; }  // token_embd when tied
    const float* output_norm() const { return output_norm_; }
    const std::vector<DeviceLayer>& layers() const { return layers_; }
    uint64_t bytes() const { return bytes_; }                      // all device memory held for weights
    uint64_t bytes_per_token() const { return bytes_per_token_; }  // what one decode step reads

private:
    DeviceLayer add_mamba2(const LayerWeights& layer);
    DeviceMatrix add_matrix(const TensorView& t);
    const float* add_vector(const TensorView& t);

    std::vector<DeviceBuffer> buffers_;
    DeviceMatrix token_embd_, output_;
    const float* output_norm_ = nullptr;
    std::vector<DeviceLayer> layers_;
    uint64_t bytes_ = 0, bytes_per_token_ = 0;
};

}  // namespace dendro::cuda
