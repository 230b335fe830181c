#include "cache/state_file.h"

#include <xxhash.h>

#include <bit>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "common/checked_int.h"
#include "format/atomic_file.h"
#include "common/error.h"
#include "format/regular_file.h"

namespace dendro {

// The format is little-endian and written from memory as is.
static_assert(std::endian::native == std::endian::little, "state files are written on little-endian hosts");

namespace {

constexpr size_t kMagicBytes = sizeof kStateFileMagic;
constexpr size_t kVersionOffset = kMagicBytes;
constexpr size_t kPreambleBytes = kMagicBytes + sizeof(uint32_t);  // magic + version: readable in every version

uint64_t mul(uint64_t a, uint64_t b) { return checked_mul(a, b, "state file sizes"); }
uint64_t add(uint64_t a, uint64_t b) { return checked_add(a, b, "state file sizes"); }

// The architecture as the file records it (fixed numbers, independent of the enum's order).
constexpr uint32_t kFileArchMamba1 = 1;
constexpr uint32_t kFileArchMamba2 = 2;

uint32_t file_arch(Architecture arch) { return arch == Architecture::Mamba2 ? kFileArchMamba2 : kFileArchMamba1; }

struct XxhState {
    XXH3_state_t* state = XXH3_createState();
    XxhState() {
        if (state == nullptr) throw std::bad_alloc();
        XXH3_64bits_reset(state);
    }
    ~XxhState() { XXH3_freeState(state); }
    XxhState(const XxhState&) = delete;
    XxhState& operator=(const XxhState&) = delete;
    void update(const void* data, size_t size) { XXH3_64bits_update(state, data, size); }
    uint64_t digest() const { return XXH3_64bits_digest(state); }
};

// Element counts of the body arrays, in file order after the tokens.
struct BodyCounts {
    uint64_t logits, conv, ssm;
};

BodyCounts body_counts(const StateFileHeader& h) {
    const StateShape& sh = h.shape;
    const auto n_layer = static_cast<uint64_t>(sh.n_layer);
    return {static_cast<uint64_t>(h.n_vocab),
            mul(mul(n_layer, static_cast<uint64_t>(sh.d_conv - 1)), static_cast<uint64_t>(sh.conv_channels)),
            mul(mul(n_layer, static_cast<uint64_t>(sh.d_inner)), static_cast<uint64_t>(sh.d_state))};
}

// A shape some model has, a vocabulary and at least one token: the reader and the writer refuse anything else.
bool has_possible_sizes(const StateFileHeader& h) {
    return h.shape.is_possible() && h.n_vocab >= 1 && h.n_tokens >= 1;
}

// Version 2's header (version 1's lacked the architecture and conv_channels, see decode_header).
void encode_header(const StateFileHeader& h, uint8_t* out) {
    uint8_t* p = out;
    const auto put = [&p](const void* value, size_t size) {
        std::memcpy(p, value, size);
        p += size;
    };
    const auto dtype = static_cast<uint32_t>(h.dtype);
    const uint32_t arch = file_arch(h.shape.arch), reserved = 0;
    put(kStateFileMagic, kMagicBytes);
    put(&h.version, sizeof h.version);
    put(&dtype, sizeof dtype);
    put(&h.model.high, sizeof h.model.high);
    put(&h.model.low, sizeof h.model.low);
    put(&arch, sizeof arch);
    put(&reserved, sizeof reserved);
    const StateShape& sh = h.shape;
    for (const int64_t* field :
         {&sh.n_layer, &sh.d_conv, &sh.conv_channels, &sh.d_inner, &sh.d_state, &h.n_vocab, &h.n_tokens}) {
        put(field, sizeof *field);
    }
}

// `in` holds h.header_bytes() bytes of a header whose version (already read) is 1 or 2. Returns what is wrong
// with it (an unknown architecture, a reserved word that is not 0), or an empty string.
std::string decode_header(const uint8_t* in, StateFileHeader& h) {
    const uint8_t* p = in + kMagicBytes;
    const auto get = [&p](void* value, size_t size) {
        std::memcpy(value, p, size);
        p += size;
    };
    uint32_t dtype = 0;
    get(&h.version, sizeof h.version);
    get(&dtype, sizeof dtype);
    h.dtype = static_cast<GgmlType>(dtype);
    get(&h.model.high, sizeof h.model.high);
    get(&h.model.low, sizeof h.model.low);
    StateShape& sh = h.shape;
    if (h.version == kStateFileVersion1) {
        // Mamba-1 only, whose conv runs over the SSM's channels.
        sh.arch = Architecture::Mamba1;
        for (int64_t* field : {&sh.n_layer, &sh.d_conv, &sh.d_inner, &sh.d_state, &h.n_vocab, &h.n_tokens}) {
            get(field, sizeof *field);
        }
        sh.conv_channels = sh.d_inner;
        return {};
    }
    uint32_t arch = 0, reserved = 0;
    get(&arch, sizeof arch);
    get(&reserved, sizeof reserved);
    for (int64_t* field :
         {&sh.n_layer, &sh.d_conv, &sh.conv_channels, &sh.d_inner, &sh.d_state, &h.n_vocab, &h.n_tokens}) {
        get(field, sizeof *field);
    }
    if (reserved != 0) return concat("reserved header word is ", reserved, ", not 0");
    if (arch == kFileArchMamba1) {
        sh.arch = Architecture::Mamba1;
    } else if (arch == kFileArchMamba2) {
        sh.arch = Architecture::Mamba2;
    } else {
        return concat("unknown architecture ", arch, " in the header");
    }
    return {};
}

// An open state file being read front to back, feeding the checksum as it goes.
class StateFileReader {
public:
    explicit StateFileReader(const std::string& path) : path_(path), file_(path), size_(file_.size()) {}

    StateFileHeader header() {
        uint8_t bytes[kStateFileHeaderBytes];
        // Shorter than the magic is no state file at all, not a truncated one.
        if (size_ < kMagicBytes) fail("state file ", path_, ": not a Dendro state file (", size_, " bytes)");
        read(bytes, kMagicBytes);
        if (std::memcmp(bytes, kStateFileMagic, kMagicBytes) != 0) fail("state file ", path_, ": not a Dendro state file");
        if (size_ < kPreambleBytes) fail("state file ", path_, ": truncated (", size_, " bytes)");
        read(bytes + kMagicBytes, kPreambleBytes - kMagicBytes);
        uint32_t version = 0;
        std::memcpy(&version, bytes + kVersionOffset, sizeof version);
        if (version != kStateFileVersion && version != kStateFileVersion1) {
            fail("state file ", path_, ": format version ", version, ", this build reads versions ", kStateFileVersion1,
                 " and ", kStateFileVersion);
        }
        StateFileHeader h;
        h.version = version;
        if (size_ < h.header_bytes()) fail("state file ", path_, ": truncated (", size_, " bytes)");
        read(bytes + kPreambleBytes, h.header_bytes() - kPreambleBytes);
        if (const std::string problem = decode_header(bytes, h); !problem.empty()) fail("state file ", path_, ": ", problem);
        if (h.dtype != GgmlType::F32) {
            fail("state file ", path_, ": unsupported element type ", static_cast<uint32_t>(h.dtype));
        }
        if (!has_possible_sizes(h)) {
            const StateShape& sh = h.shape;
            fail("state file ", path_, ": invalid sizes (", architecture_name(sh.arch), ", n_layer ", sh.n_layer, ", d_conv ", sh.d_conv,
                 ", conv_channels ", sh.conv_channels, ", d_inner ", sh.d_inner, ", d_state ", sh.d_state, ", n_vocab ",
                 h.n_vocab, ", n_tokens ", h.n_tokens, ")");
        }
        uint64_t expected = 0;
        try {
            expected = h.file_size();
        } catch (const Error&) {
            fail("state file ", path_, ": sizes in the header overflow");
        }
        if (size_ < expected) fail("state file ", path_, ": truncated (", size_, " bytes, expected ", expected, ")");
        if (size_ > expected) fail("state file ", path_, ": ", size_ - expected, " unexpected trailing bytes");
        return h;
    }

    template <typename T>
    void read_array(std::vector<T>& out, uint64_t count) {
        out.resize(count);  // bounded: the header's sizes were checked against the file's length
        read(out.data(), count * sizeof(T));
    }

    void verify_checksum() {
        const uint64_t computed = checksum_.digest();
        uint64_t stored = 0;
        file_.read(&stored, sizeof stored);
        if (stored != computed) fail("state file ", path_, ": checksum mismatch (the file is corrupt)");
    }

    const std::string& path() const { return path_; }

private:
    void read(void* out, size_t size) {
        file_.read(out, size);
        checksum_.update(out, size);
    }

    std::string path_;
    RegularFile file_;
    uint64_t size_ = 0;
    XxhState checksum_;
};

}  // namespace

uint64_t StateFileHeader::file_size() const {
    const BodyCounts counts = body_counts(*this);
    const uint64_t floats = add(add(counts.logits, counts.conv), counts.ssm);
    const uint64_t body = add(mul(static_cast<uint64_t>(n_tokens), sizeof(int32_t)), mul(floats, sizeof(float)));
    return add(add(header_bytes(), body), kStateFileChecksumBytes);
}

StateFileHeader state_file_header(const ModelFingerprint& model, const StateSnapshot& snapshot) {
    const SequenceState& s = snapshot.state;
    StateFileHeader h;
    h.model = model;
    h.shape = s.shape;
    h.n_vocab = static_cast<int64_t>(snapshot.last_logits.size());
    h.n_tokens = snapshot.n_tokens();
    return h;
}

uint64_t state_file_size(const StateSnapshot& snapshot) { return state_file_header({}, snapshot).file_size(); }

uint64_t write_state_file(const std::string& path, const ModelFingerprint& model, const StateSnapshot& snapshot) {
    const SequenceState& s = snapshot.state;
    const StateFileHeader h = state_file_header(model, snapshot);
    if (!has_possible_sizes(h)) {
        fail("state file ", path, ": refusing to save an empty or shapeless snapshot");
    }
    const BodyCounts counts = body_counts(h);
    if (s.conv.size() != counts.conv || s.ssm.size() != counts.ssm) {
        fail("state file ", path, ": the snapshot's state arrays do not match its shapes");
    }

    uint8_t header_bytes[kStateFileHeaderBytes];
    encode_header(h, header_bytes);
    AtomicFileWriter writer(path);
    XxhState checksum;
    const auto put = [&](const void* data, size_t size) {
        checksum.update(data, size);
        writer.write(data, size);
    };
    put(header_bytes, sizeof header_bytes);
    put(snapshot.tokens.data(), snapshot.tokens.size() * sizeof(int32_t));
    put(snapshot.last_logits.data(), snapshot.last_logits.size() * sizeof(float));
    put(s.conv.data(), s.conv.size() * sizeof(float));
    put(s.ssm.data(), s.ssm.size() * sizeof(float));
    const uint64_t digest = checksum.digest();
    writer.write(&digest, sizeof digest);
    writer.commit();
    return h.file_size();
}

bool starts_with_state_file_magic(const std::string& path) {
    try {
        RegularFile file(path);
        char magic[kMagicBytes];
        if (file.size() < kMagicBytes) return false;
        file.read(magic, sizeof magic);
        return std::memcmp(magic, kStateFileMagic, kMagicBytes) == 0;
    } catch (const Error&) {
        return false;  // missing, unreadable or not a regular file: not one of ours
    }
}

StateFileHeader read_state_file_header(const std::string& path) {
    StateFileReader reader(path);
    return reader.header();
}

StateSnapshot read_state_file(const std::string& path, const ModelFingerprint& expected_model) {
    StateFileReader reader(path);
    const StateFileHeader h = reader.header();
    const BodyCounts counts = body_counts(h);
    StateSnapshot snapshot;
    SequenceState& s = snapshot.state;
    s.shape = h.shape;
    reader.read_array(snapshot.tokens, static_cast<uint64_t>(h.n_tokens));
    reader.read_array(snapshot.last_logits, counts.logits);
    reader.read_array(s.conv, counts.conv);
    reader.read_array(s.ssm, counts.ssm);
    reader.verify_checksum();
    if (h.model != expected_model) {
        fail("state file ", path, ": saved for another model (fingerprint ", h.model.hex(), ", this model's is ",
             expected_model.hex(), ")");
    }
    return snapshot;
}

}  // namespace dendro
