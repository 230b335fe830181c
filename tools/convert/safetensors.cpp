#include "safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>

#include "common/checked_int.h"
#include "common/error.h"
#include "hf_json.h"
#include "format/mapped_file.h"

namespace dendro {
namespace {

constexpr size_t kHeaderLengthBytes = 8;
constexpr const char* kMetadataKey = "__metadata__";

// Element sizes of the dtypes the safetensors format defines (sub-byte types are not accepted).
std::optional<size_t> dtype_element_size(std::string_view dtype) {
    static const std::map<std::string_view, size_t> sizes = {
        {"BOOL", 1}, {"U8", 1},   {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"U16", 2},
        {"I16", 2},  {"F16", 2},  {"BF16", 2}, {"U32", 4},    {"I32", 4},     {"F32", 4},
        {"U64", 8},  {"I64", 8},  {"F64", 8},
    };
    const auto it = sizes.find(dtype);
    if (it == sizes.end()) return std::nullopt;
    return it->second;
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(v); ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
}

uint64_t json_offset(const nlohmann::json& value, const std::string& where) {
    if (!value.is_number_unsigned()) fail(where, ": data_offsets must hold non-negative integers");
    return value.get<uint64_t>();
}

SafetensorsTensor parse_tensor_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                                     std::span<const uint8_t> data_section, uint64_t& begin_out) {
    const std::string where = concat(path, ": tensor '", name, "'");
    if (!entry.is_object()) fail(where, ": header entry is not an object");
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail(where, ": missing string 'dtype'");
    if (shape_it == entry.end() || !shape_it->is_array()) fail(where, ": missing array 'shape'");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
        fail(where, ": 'data_offsets' must be [begin, end]");
    }

    SafetensorsTensor tensor;
    tensor.name = name;
    tensor.file = path;
    tensor.dtype = dtype_it->get<std::string>();
    const std::optional<size_t> element_size = dtype_element_size(tensor.dtype);
    if (!element_size) fail(where, ": unknown dtype '", tensor.dtype, "'");

    uint64_t n_bytes = *element_size;
    for (const nlohmann::json& dim : *shape_it) {
        if (!dim.is_number_unsigned()) fail(where, ": shape must hold non-negative integers");
        const uint64_t d = dim.get<uint64_t>();
        const std::optional<uint64_t> bytes = try_mul(n_bytes, d);
        if (!bytes || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            fail(where, ": shape ", shape_it->dump(), " overflows");
        }
        n_bytes = *bytes;
        tensor.shape.push_back(static_cast<int64_t>(d));
    }

    const uint64_t begin = json_offset((*offsets_it)[0], where);
    const uint64_t end = json_offset((*offsets_it)[1], where);
    if (begin > end || end > data_section.size()) {
        fail(where, ": data_offsets [", begin, ", ", end, "] lie outside the ", data_section.size(),
             "-byte data section (truncated file?)");
    }
    if (end - begin != n_bytes) {
        fail(where, ": dtype ", tensor.dtype, " and shape ", tensor.shape_string(), " need ", n_bytes,
             " bytes but data_offsets span ", end - begin);
    }
    tensor.data = data_section.subspan(begin, end - begin);
    begin_out = begin;
    return tensor;
}

}  // namespace

SafetensorsFile::~SafetensorsFile() = default;

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
    file->path_ = path;
    file->map_ = std::make_unique<MappedFile>(path);
    const std::span<const uint8_t> bytes = file->map_->bytes();
    if (bytes.size() < kHeaderLengthBytes) fail(path, ": too short for a safetensors file (", bytes.size(), " bytes)");
    const uint64_t header_size = read_u64_le(bytes.data());
    if (header_size > kSafetensorsMaxHeaderBytes) {
        fail(path, ": header length ", header_size, " exceeds the ", kSafetensorsMaxHeaderBytes, "-byte limit");
    }
    if (header_size > bytes.size() - kHeaderLengthBytes) {
        fail(path, ": header length ", header_size, " runs past the end of the ", bytes.size(),
             "-byte file (truncated file?)");
    }
    const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + kHeaderLengthBytes), header_size);
    if (header_text.empty() || header_text.front() != '{') fail(path, ": header is not a JSON object");
    const nlohmann::json header = parse_hf_json(header_text, concat(path, " (safetensors header)"));
    if (!header.is_object()) fail(path, ": header is not a JSON object");

    const std::span<const uint8_t> data_section = bytes.subspan(kHeaderLengthBytes + header_size);
    std::vector<std::pair<uint64_t, SafetensorsTensor>> by_offset;
    for (const auto& [name, entry] : header.items()) {
        if (name == kMetadataKey) continue;
        uint64_t begin = 0;
        SafetensorsTensor tensor = parse_tensor_entry(path, name, entry, data_section, begin);
        by_offset.emplace_back(begin, std::move(tensor));
    }
    std::stable_sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first < b.first : a.second.data.size() < b.second.data.size();
    });
    // The byte ranges must tile the data section: each starts where the previous ends.
    uint64_t expected_begin = 0;
    for (const auto& [begin, tensor] : by_offset) {
        if (begin < expected_begin) fail(path, ": tensor '", tensor.name, "' overlaps the tensor before it");
        if (begin > expected_begin) fail(path, ": unused bytes before tensor '", tensor.name, "' (offset ", begin, ")");
        expected_begin = begin + tensor.data.size();
    }
    if (expected_begin != data_section.size()) {
        fail(path, ": ", data_section.size() - expected_begin, " bytes after the last tensor belong to no tensor");
    }
    for (auto& entry : by_offset) file->tensors_.push_back(std::move(entry.second));
    return file;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
    for (const SafetensorsTensor& t : tensors_) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

void SafetensorsCheckpoint::add_file(std::unique_ptr<SafetensorsFile> file) {
    for (const SafetensorsTensor& t : file->tensors()) {
        const auto [it, inserted] = by_name_.emplace(t.name, &t);
        if (!inserted) fail("tensor '", t.name, "' is in both ", it->second->file, " and ", t.file);
    }
    files_.push_back(std::move(file));
}

std::unique_ptr<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& dir) {
    namespace fs = std::filesystem;
    std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint());
    const fs::path single = fs::path(dir) / kSingleFileName;
    const fs::path index_path = fs::path(dir) / kIndexFileName;
    if (fs::exists(single)) {
        checkpoint->add_file(SafetensorsFile::open(single.string()));
        return checkpoint;
    }
    if (!fs::exists(index_path)) {
        fail(dir, ": no ", kSingleFileName, " or ", kIndexFileName,
             " (only safetensors checkpoints are supported, not pytorch_model.bin)");
    }
    const nlohmann::json index = read_hf_json_file(index_path.string());
    const auto map_it = index.find("weight_map");
    if (!index.is_object() || map_it == index.end() || !map_it->is_object() || map_it->empty()) {
        fail(index_path.string(), ": missing or empty object 'weight_map'");
    }
    std::map<std::string, std::vector<std::string>> names_by_shard;
    for (const auto& [name, shard] : map_it->items()) {
        if (!shard.is_string()) fail(index_path.string(), ": weight_map entry '", name, "' is not a file name");
        const std::string shard_name = shard.get<std::string>();
        // Shards live beside the index: a path that leaves the directory is refused.
        if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." || shard_name == "..") {
            fail(index_path.string(), ": weight_map entry '", name, "' names '", shard_name, "', not a file in ", dir);
        }
        names_by_shard[shard_name].push_back(name);
    }
    for (const auto& [shard_name, names] : names_by_shard) {
        auto shard = SafetensorsFile::open((fs::path(dir) / shard_name).string());
        const std::set<std::string> expected(names.begin(), names.end());
        for (const std::string& name : names) {
            if (!shard->find(name)) fail(shard->path(), ": has no tensor '", name, "' although ", kIndexFileName, " says so");
        }
        for (const SafetensorsTensor& t : shard->tensors()) {
            if (!expected.count(t.name)) fail(shard->path(), ": tensor '", t.name, "' is not in ", kIndexFileName);
        }
        checkpoint->add_file(std::move(shard));
    }
    return checkpoint;
}

const SafetensorsTensor* SafetensorsCheckpoint::find(std::string_view name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const SafetensorsTensor*> SafetensorsCheckpoint::tensors() const {
    std::vector<const SafetensorsTensor*> all;
    all.reserve(by_name_.size());
    for (const auto& entry : by_name_) all.push_back(entry.second);
    return all;
}

}  // namespace dendro
