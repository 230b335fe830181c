// Saved sequence states on disk (docs/state-file-format.md): a fixed little-endian header (magic, version,
// model fingerprint, dtype, shapes, counts), the prefix's token ids, its last logits, the conv windows and
// SSM states, and an XXH3-64 checksum over everything before it. Writes are atomic. Reads check every size
// against the file's length before allocating, then the checksum, so a truncated, corrupt, foreign or
// future file is reported as a dendro::Error, never half-loaded.
#pragma once

#include <cstdint>
#include <string>

#include "format/ggml_types.h"
#include "model/model_fingerprint.h"
#include "cache/state_snapshot.h"

namespace dendro {

inline constexpr char kStateFileMagic[8] = {'D', 'N', 'D', 'R', 'S', 'T', 'A', 'T'};
// Version 2 records the architecture and the conv window's width (Mamba-2's conv runs over more channels
// than its SSM state has); version 1 files (Mamba-1 only) are still read.
inline constexpr uint32_t kStateFileVersion = 2;
inline constexpr uint32_t kStateFileVersion1 = 1;
inline constexpr uint64_t kStateFileHeaderBytes = 96;
inline constexpr uint64_t kStateFileV1HeaderBytes = 80;
inline constexpr uint64_t kStateFileChecksumBytes = 8;

struct StateFileHeader {
    uint32_t version = kStateFileVersion;
    GgmlType dtype = GgmlType::F32;  // element type of logits and states (only F32 is written)
    ModelFingerprint model;
    StateShape shape;
    int64_t n_vocab = 0;   // number of last logits
    int64_t n_tokens = 0;  // length of the prefix

    uint64_t header_bytes() const { return version == kStateFileVersion1 ? kStateFileV1HeaderBytes : kStateFileHeaderBytes; }
    // Total file size these fields imply; throws dendro::Error when it overflows.
    uint64_t file_size() const;
};

// The header write_state_file gives a snapshot, and so the size of its file.
StateFileHeader state_file_header(const ModelFingerprint& model, const StateSnapshot& snapshot);
uint64_t state_file_size(const StateSnapshot& snapshot);

// Saves `snapshot` for the model `model` (atomic: temp file + rename). Returns the bytes written.
uint64_t write_state_file(const std::string& path, const ModelFingerprint& model, const StateSnapshot& snapshot);

// Whether `path` is a regular file that starts with kStateFileMagic: a state file of any version, intact or
// not, and so a file Dendro may replace. False for anything else (never blocks: see regular_file.h).
bool starts_with_state_file_magic(const std::string& path);

// Reads and validates the header only (magic, version, dtype, shapes, size against the file's length);
// does not verify the checksum.
StateFileHeader read_state_file_header(const std::string& path);

// Reads the whole file and verifies everything, including that it was written for `expected_model`.
StateSnapshot read_state_file(const std::string& path, const ModelFingerprint& expected_model);

}  // namespace dendro
