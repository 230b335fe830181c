// Streaming GGUF v3 writer: metadata first, then each tensor's data as its producer delivers it, padded to
// the alignment, all through an AtomicFileWriter so a failure never leaves a partial file at the target.
#include <cstring>
#include <limits>
#include <memory>

#include "format/atomic_file.h"
#include "common/error.h"
#include "format/gguf.h"
#include "format/gguf_format_rules.h"

namespace dendro {
namespace {

class ByteSink {
public:
    template <typename T>
    void put(T value) {
        const auto* raw = reinterpret_cast<const uint8_t*>(&value);
        bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
    }

    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        bytes_.insert(bytes_.end(), s.begin(), s.end());
    }

    void pad_to(uint64_t alignment) { bytes_.resize(gguf_rules::pad_to_alignment(bytes_.size(), alignment), 0); }

    const std::vector<uint8_t>& bytes() const { return bytes_; }

private:
    std::vector<uint8_t> bytes_;
};

// Writes one fixed-size element of `type`, narrowing from GgufValue's representation (ranges were checked
// when the value was set).
template <typename Held>
void put_fixed(ByteSink& sink, GgufType type, Held v) {
    switch (type) {
        case GgufType::UINT8: sink.put(static_cast<uint8_t>(v)); return;
        case GgufType::INT8: sink.put(static_cast<int8_t>(v)); return;
        case GgufType::UINT16: sink.put(static_cast<uint16_t>(v)); return;
        case GgufType::INT16: sink.put(static_cast<int16_t>(v)); return;
        case GgufType::UINT32: sink.put(static_cast<uint32_t>(v)); return;
        case GgufType::INT32: sink.put(static_cast<int32_t>(v)); return;
        case GgufType::UINT64: sink.put(static_cast<uint64_t>(v)); return;
        case GgufType::INT64: sink.put(static_cast<int64_t>(v)); return;
        case GgufType::FLOAT32: sink.put(static_cast<float>(v)); return;
        case GgufType::FLOAT64: sink.put(static_cast<double>(v)); return;
        case GgufType::BOOL: sink.put(static_cast<uint8_t>(v ? 1 : 0)); return;
        case GgufType::STRING:
        case GgufType::ARRAY: break;
    }
    fail("internal error: ", gguf_type_name(type), " is not a fixed-size type");
}

void put_value(ByteSink& sink, const GgufValue& value) {
    sink.put(static_cast<uint32_t>(value.type));
    const bool array = value.type == GgufType::ARRAY;
    const GgufType element_type = array ? value.array_type : value.type;
    if (array) {
        sink.put(static_cast<uint32_t>(element_type));
        sink.put<uint64_t>(value.array_size());
    }
    std::visit(
        [&](const auto& held) {
            using Held = std::decay_t<decltype(held)>;
            if constexpr (std::is_same_v<Held, std::string>) {
                sink.put_string(held);
            } else if constexpr (std::is_same_v<Held, std::vector<std::string>>) {
                for (const std::string& s : held) sink.put_string(s);
            } else if constexpr (std::is_same_v<Held, std::monostate>) {
                fail("internal error: empty GGUF value");  // check_value rejects it before
            } else if constexpr (requires { typename Held::value_type; }) {
                for (const auto v : held) put_fixed(sink, element_type, v);
            } else {
                put_fixed(sink, element_type, held);
            }
        },
        value.data);
}

uint64_t checked_nbytes(const std::string& name, GgmlType type, const std::vector<int64_t>& ne) {
    try {
        gguf_rules::check_tensor_name(name);
        if (ne.empty()) fail("a tensor needs at least one dimension");
        return gguf_rules::tensor_nbytes(static_cast<uint32_t>(type), ne);
    } catch (const Error& e) {
        fail("GGUF writer: tensor '", name, "': ", e.what());
    }
}

}  // namespace

GgufWriter::GgufWriter(size_t alignment) : alignment_(alignment) {
    if (!gguf_rules::is_valid_alignment(alignment) || alignment > std::numeric_limits<uint32_t>::max()) {
        fail("GGUF writer: alignment ", alignment, " is not a power of two that fits in u32");
    }
    // Readers only know a non-default alignment from the key.
    if (alignment != kGgufDefaultAlignment) {
        set(std::string(gguf_rules::kAlignmentKey), GgufValue::u32(static_cast<uint32_t>(alignment)));
    }
}

void GgufWriter::set(std::string key, GgufValue value) {
    if (key.empty()) fail("GGUF writer: empty key");
    try {
        gguf_rules::check_value(concat("key '", key, "'"), value);
    } catch (const Error& e) {
        fail("GGUF writer: ", e.what());
    }
    if (key == gguf_rules::kAlignmentKey) {
        if (value.type != GgufType::UINT32) {
            fail("GGUF writer: key '", key, "' must be of type u32, not ", gguf_type_name(value.type));
        }
        const uint64_t alignment = std::get<uint64_t>(value.data);
        if (!gguf_rules::is_valid_alignment(alignment)) {
            fail("GGUF writer: key '", key, "' is ", alignment, ", not a power of two");
        }
        alignment_ = static_cast<size_t>(alignment);
    }
    for (GgufKeyValue& kv : kvs_) {
        if (kv.key == key) {
            kv.value = std::move(value);
            return;
        }
    }
    kvs_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, TensorProducer producer) {
    const uint64_t nbytes = checked_nbytes(name, type, ne);
    if (!producer) fail("GGUF writer: tensor '", name, "' has no data producer");
    for (const PendingTensor& tensor : tensors_) {
        if (tensor.name == name) fail("GGUF writer: duplicate tensor name '", name, "'");
    }
    tensors_.push_back({std::move(name), type, std::move(ne), std::move(producer), nbytes});
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes) {
    const uint64_t nbytes = checked_nbytes(name, type, ne);
    if (bytes.size() != nbytes) {
        fail("GGUF writer: tensor '", name, "' of type ", ggml_type_name(type), " needs ", nbytes, " bytes, got ",
             bytes.size());
    }
    auto shared = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
    add_tensor(std::move(name), type, std::move(ne),
               [shared](std::vector<uint8_t>& out) { out.assign(shared->begin(), shared->end()); });
}

void GgufWriter::write(const std::string& path, const std::function<void(size_t, size_t)>& progress) const {
    ByteSink meta;
    meta.put(kGgufMagic);
    meta.put(kGgufVersion);
    meta.put<uint64_t>(tensors_.size());
    meta.put<uint64_t>(kvs_.size());
    for (const GgufKeyValue& kv : kvs_) {
        meta.put_string(kv.key);
        put_value(meta, kv.value);
    }
    uint64_t offset = 0;
    for (const PendingTensor& tensor : tensors_) {
        meta.put_string(tensor.name);
        meta.put(static_cast<uint32_t>(tensor.ne.size()));
        for (const int64_t d : tensor.ne) meta.put(d);
        meta.put(static_cast<uint32_t>(tensor.type));
        meta.put(offset);
        offset = gguf_rules::pad_to_alignment(offset + tensor.nbytes, alignment_);
    }
    meta.pad_to(alignment_);

    AtomicFileWriter out(path);
    out.write(meta.bytes());
    const std::vector<uint8_t> padding(alignment_, 0);
    std::vector<uint8_t> data;  // reused: holds one tensor at a time
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const PendingTensor& tensor = tensors_[i];
        data.clear();
        tensor.producer(data);
        if (data.size() != tensor.nbytes) {
            fail(path, ": tensor '", tensor.name, "' of type ", ggml_type_name(tensor.type), " shape ",
                 GgufTensorInfo{tensor.name, tensor.type, tensor.ne}.shape_string(), " needs ", tensor.nbytes,
                 " bytes, its producer gave ", data.size());
        }
        out.write(data);
        const uint64_t padded = gguf_rules::pad_to_alignment(tensor.nbytes, alignment_);
        out.write(padding.data(), padded - tensor.nbytes);
        if (progress) progress(i + 1, tensors_.size());
    }
    out.commit();
}

}  // namespace dendro
