// Safetensors checkpoints, HF's weight format: an 8-byte little-endian header length, a JSON header mapping
// tensor names to dtype, shape and data_offsets, then the tensor bytes. Files are memory-mapped and their
// tensors viewed in place. Parsing is strict (as the reference implementation): the header must fit the
// file, every tensor's byte range must match its dtype and shape, and the ranges must tile the data section
// exactly, without overlaps or holes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint_tensors.h"

namespace dendro {

class MappedFile;

// The largest header accepted (the limit of HF's safetensors library), so a corrupt length cannot make the
// parser read or allocate gigabytes.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// Safetensors records are the converter's generic tensor records.
using SafetensorsTensor = CheckpointTensor;

class SafetensorsFile {
public:
    // Maps and validates the file; throws dendro::Error naming the file and what is wrong.
    static std::unique_ptr<SafetensorsFile> open(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }  // in data order
    const SafetensorsTensor* find(std::string_view name) const;

private:
    SafetensorsFile() = default;
    std::string path_;
    std::unique_ptr<MappedFile> map_;
    std::vector<SafetensorsTensor> tensors_;
};

// The weights of a HF checkpoint directory: model.safetensors, or else the shards that
// model.safetensors.index.json maps each tensor to.
class SafetensorsCheckpoint : public CheckpointTensors {
public:
    static constexpr const char* kSingleFileName = "model.safetensors";
    static constexpr const char* kIndexFileName = "model.safetensors.index.json";

    // Throws dendro::Error naming the directory or file when weights are missing, a shard is corrupt, or
    // the index disagrees with the shards.
    static std::unique_ptr<SafetensorsCheckpoint> open(const std::string& dir);

    const SafetensorsTensor* find(std::string_view name) const override;
    // Every tensor of the checkpoint, sorted by name.
    std::vector<const SafetensorsTensor*> tensors() const override;
    const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

private:
    SafetensorsCheckpoint() = default;
    void add_file(std::unique_ptr<SafetensorsFile> file);
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::map<std::string, const SafetensorsTensor*, std::less<>> by_name_;
};

}  // namespace dendro
