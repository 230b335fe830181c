#include "torch_checkpoint.h"

#include <cstring>
#include <optional>

#include "common/checked_int.h"
#include "common/error.h"
#include "format/mapped_file.h"
#include "torch_pickle.h"
#include "torch_zip.h"

namespace dendro {
namespace {

constexpr uint8_t kZipMagic[] = {'P', 'K', 0x03, 0x04};  // a zip file's first local header
constexpr uint8_t kPickleProtoOpcode = 0x80;             // how the legacy format's first pickle begins
constexpr const char* kPickleRecord = "data.pkl";
constexpr const char* kByteOrderRecord = "byteorder";
constexpr const char* kLittleEndian = "little";
constexpr const char* kStorageFolder = "data/";

// torch.save puts every record in one folder named after the archive: "<folder>/data.pkl".
std::string record_folder(const TorchZipArchive& archive) {
    std::optional<std::string> folder;
    for (const auto& [name, data] : archive.records()) {
        const size_t slash = name.find('/');
        if (slash == std::string::npos || name.compare(slash + 1, std::string::npos, kPickleRecord) != 0) continue;
        if (folder) fail(archive.path(), ": more than one ", kPickleRecord, " record (", *folder, kPickleRecord, ", ", name, ")");
        folder = name.substr(0, slash + 1);
    }
    if (!folder) {
        fail(archive.path(), ": no <folder>/", kPickleRecord, " record (a zip archive, but not one written by torch.save)");
    }
    return *folder;
}

// The tensor's bytes inside its storage record, after checking that its view is dense and lies inside.
std::span<const uint8_t> tensor_bytes(const TorchPickledTensor& t, std::span<const uint8_t> record,
                                      const std::string& record_name, const std::string& where) {
    const size_t element_size = torch_dtype_element_size(t.dtype);
    const uint64_t storage_bytes =
        checked_mul<uint64_t>(static_cast<uint64_t>(t.storage_numel), element_size, where, ": storage bytes");
    if (storage_bytes != record.size()) {
        fail(where, ": its storage of ", t.storage_numel, " ", t.dtype, " elements needs ", storage_bytes,
             " bytes but record '", record_name, "' holds ", record.size());
    }
    int64_t n_elements = 1;
    for (const int64_t d : t.shape) {
        if (d < 0) fail(where, ": negative dimension ", d);
        n_elements = checked_mul(n_elements, d, where, ": element count");
    }
    if (t.stride.size() != t.shape.size()) {
        fail(where, ": ", t.stride.size(), " strides for ", t.shape.size(), " dimensions");
    }
    // Row-major contiguity; a dimension of size 1 may have any stride (torch's own rule).
    int64_t expected_stride = 1;
    for (size_t i = t.shape.size(); i-- > 0;) {
        if (t.shape[i] != 1 && t.stride[i] != expected_stride) {
            fail(where, ": stride ", t.stride[i], " of dimension ", i, " (expected ", expected_stride,
                 "): non-contiguous tensors are not supported; save tensor.contiguous()");
        }
        expected_stride = checked_mul(expected_stride, t.shape[i], where, ": stride");
    }
    if (t.storage_offset < 0) fail(where, ": negative storage offset ", t.storage_offset);
    if (t.storage_offset > t.storage_numel) {
        fail(where, ": storage offset ", t.storage_offset, " lies past the end of its ", t.storage_numel, "-element storage");
    }
    const int64_t end = checked_add(t.storage_offset, n_elements, where, ": storage offset + element count");
    if (end > t.storage_numel) {
        fail(where, ": needs elements [", t.storage_offset, ", ", end, ") but its storage (record '", record_name,
             "') holds ", t.storage_numel, ": storage shorter than its tensor");
    }
    return record.subspan(static_cast<size_t>(t.storage_offset) * element_size,
                          static_cast<size_t>(n_elements) * element_size);
}

}  // namespace

TorchCheckpoint::~TorchCheckpoint() = default;

std::unique_ptr<TorchCheckpoint> TorchCheckpoint::open(const std::string& path) {
    auto file = std::make_unique<MappedFile>(path);
    const std::span<const uint8_t> bytes = file->bytes();
    if (bytes.size() < sizeof(kZipMagic) || std::memcmp(bytes.data(), kZipMagic, sizeof(kZipMagic)) != 0) {
        if (!bytes.empty() && bytes[0] == kPickleProtoOpcode) {
            fail(path, ": legacy (pre-zip, torch < 1.6) torch.save format, which is not supported; re-save it in the "
                       "zip format with torch >= 1.6: torch.save(torch.load(path), path)");
        }
        fail(path, ": not a torch.save zip archive (no zip signature)");
    }
    std::unique_ptr<TorchCheckpoint> checkpoint(new TorchCheckpoint());
    checkpoint->archive_ = TorchZipArchive::open(std::move(file));
    const TorchZipArchive& archive = *checkpoint->archive_;

    const std::string folder = record_folder(archive);
    if (const auto* order = archive.find(folder + kByteOrderRecord)) {
        const std::string_view text(reinterpret_cast<const char*>(order->data()), order->size());
        if (text != kLittleEndian) fail(path, ": byte order '", text, "' (only little-endian checkpoints are supported)");
    }
    const std::string pickle_name = folder + kPickleRecord;
    const std::vector<TorchPickledTensor> pickled =
        read_torch_state_dict_pickle(*archive.find(pickle_name), concat(path, ": ", pickle_name));

    for (const TorchPickledTensor& t : pickled) {
        const std::string where = concat(path, ": tensor '", t.name, "'");
        const std::string record_name = folder + kStorageFolder + t.storage_key;
        const auto* record = archive.find(record_name);
        if (!record) fail(where, ": its storage record '", record_name, "' is missing");
        CheckpointTensor tensor{t.name, t.dtype, t.shape, tensor_bytes(t, *record, record_name, where), path};
        checkpoint->tensors_.emplace(t.name, std::move(tensor));
    }
    return checkpoint;
}

const CheckpointTensor* TorchCheckpoint::find(std::string_view name) const {
    const auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<const CheckpointTensor*> TorchCheckpoint::tensors() const {
    std::vector<const CheckpointTensor*> all;
    all.reserve(tensors_.size());
    for (const auto& entry : tensors_) all.push_back(&entry.second);
    return all;
}

}  // namespace dendro
