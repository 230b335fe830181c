// A torch.save'd state dict (pytorch_model.bin) read without Python: the zip container (torch_zip.h), its
// data.pkl read by the restricted unpickler (torch_pickle.h), and each tensor viewed in place in its storage
// record data/<key>. Only dense contiguous tensors are accepted; a storage too short for its tensor, an
// offset past its end, element counts that overflow, a non-contiguous stride and the pre-zip legacy format
// (torch < 1.6) are refused by name.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint_tensors.h"

namespace dendro {

class TorchZipArchive;

class TorchCheckpoint : public CheckpointTensors {
public:
    static constexpr const char* kFileName = "pytorch_model.bin";

    // Throws dendro::Error naming the file and the record, opcode, global or tensor at fault.
    static std::unique_ptr<TorchCheckpoint> open(const std::string& path);
    ~TorchCheckpoint() override;
    TorchCheckpoint(const TorchCheckpoint&) = delete;
    TorchCheckpoint& operator=(const TorchCheckpoint&) = delete;

    const CheckpointTensor* find(std::string_view name) const override;
    std::vector<const CheckpointTensor*> tensors() const override;

private:
    TorchCheckpoint() = default;
    std::unique_ptr<TorchZipArchive> archive_;
    std::map<std::string, CheckpointTensor, std::less<>> tensors_;
};

}  // namespace dendro
