#include "torch_pickle.h"

#include <cstdio>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>

#include "common/checked_int.h"
#include "common/error.h"

namespace dendro {
namespace {

// The opcodes accepted (pickle protocol 2's byte values).
enum Opcode : uint8_t {
    kProto = 0x80,
    kStop = '.',
    kMark = '(',
    kNone = 'N',
    kNewTrue = 0x88,
    kNewFalse = 0x89,
    kBinInt = 'J',
    kBinInt1 = 'K',
    kBinInt2 = 'M',
    kLong1 = 0x8a,
    kBinUnicode = 'X',
    kEmptyTuple = ')',
    kTuple = 't',
    kTuple1 = 0x85,
    kTuple2 = 0x86,
    kTuple3 = 0x87,
    kEmptyList = ']',
    kAppend = 'a',
    kAppends = 'e',
    kEmptyDict = '}',
    kSetItem = 's',
    kSetItems = 'u',
    kBinPut = 'q',
    kLongBinPut = 'r',
    kBinGet = 'h',
    kLongBinGet = 'j',
    kGlobal = 'c',
    kReduce = 'R',
    kBinPersId = 'Q',
    kBuild = 'b',
};

// Names of the pickle opcodes that are refused, for the error message.
struct RefusedOpcode {
    uint8_t code;
    const char* name;
};
constexpr RefusedOpcode kRefusedOpcodes[] = {
    {'I', "INT"},          {'L', "LONG"},         {'F', "FLOAT"},         {'G', "BINFLOAT"},
    {'S', "STRING"},       {'T', "BINSTRING"},    {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"},
    {'P', "PERSID"},       {'i', "INST"},         {'o', "OBJ"},           {'l', "LIST"},
    {'d', "DICT"},         {'p', "PUT"},          {'g', "GET"},           {'0', "POP"},
    {'1', "POP_MARK"},     {'2', "DUP"},          {0x81, "NEWOBJ"},       {0x82, "EXT1"},
    {0x83, "EXT2"},        {0x84, "EXT4"},        {0x8b, "LONG4"},        {'B', "BINBYTES"},
    {'C', "SHORT_BINBYTES"}, {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
    {0x8f, "EMPTY_SET"},   {0x90, "ADDITEMS"},    {0x91, "FROZENSET"},    {0x92, "NEWOBJ_EX"},
    {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"},    {0x95, "FRAME"},        {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
};

constexpr uint8_t kProtocol = 2;  // torch.save's default pickle protocol
constexpr size_t kMaxGlobalLineBytes = 256;
constexpr size_t kMaxLong1Bytes = sizeof(int64_t);
// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).
constexpr size_t kRebuildTensorArgs = 6;
constexpr size_t kRebuildTensorArgsWithMetadata = 7;
// _rebuild_parameter(data, requires_grad, backward_hooks).
constexpr size_t kRebuildParameterArgs = 3;
// ('storage', storage_type, key, location, numel).
constexpr size_t kPersistentIdFields = 5;
constexpr const char* kPersistentIdTag = "storage";

struct StorageType {
    const char* name;   // the global torch.<name>
    const char* dtype;  // safetensors' spelling
    size_t element_size;
};
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", "F32", 4}, {"HalfStorage", "F16", 2},  {"BFloat16Storage", "BF16", 2},
    {"DoubleStorage", "F64", 8}, {"LongStorage", "I64", 8}, {"IntStorage", "I32", 4},
    {"ShortStorage", "I16", 2}, {"CharStorage", "I8", 1},   {"ByteStorage", "U8", 1},
    {"BoolStorage", "BOOL", 1},
};

enum class Kind { None, Bool, Int, String, Tuple, List, Dict, Global, Storage, Tensor };
enum class Callable { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

const char* kind_name(Kind kind) {
    switch (kind) {
        case Kind::None: return "None";
        case Kind::Bool: return "a bool";
        case Kind::Int: return "an int";
        case Kind::String: return "a string";
        case Kind::Tuple: return "a tuple";
        case Kind::List: return "a list";
        case Kind::Dict: return "a dict";
        case Kind::Global: return "a global";
        case Kind::Storage: return "a storage";
        case Kind::Tensor: return "a tensor";
    }
    return "?";
}

using ObjectId = uint32_t;

// Objects live in one arena and refer to each other by index, so that no pickle (however deeply nested or
// cyclic) makes destruction or interpretation recurse.
struct Object {
    Kind kind = Kind::None;
    int64_t number = 0;           // Bool, Int; Storage: numel; Tensor: index into the tensor list
    std::string text;             // String; Global: "module.name"; Storage: key
    std::vector<ObjectId> items;  // Tuple, List; Dict: key, value, key, value, ...
    Callable callable = Callable::OrderedDict;  // Global
    const StorageType* storage_type = nullptr;  // Global of a storage type; Storage
};

Object object_of(Kind kind, int64_t number = 0) {
    Object object;
    object.kind = kind;
    object.number = number;
    return object;
}

class Unpickler {
public:
    Unpickler(std::span<const uint8_t> bytes, const std::string& source) : bytes_(bytes), source_(source) {}

    std::vector<TorchPickledTensor> run() {
        if (bytes_.size() > kTorchPickleMaxBytes) {
            fail(source_, ": ", bytes_.size(), " bytes exceed the ", kTorchPickleMaxBytes, "-byte limit of a state dict pickle");
        }
        if (bytes_.size() < 2 || bytes_[0] != kProto) {
            fail(source_, ": does not start with opcode PROTO (not a pickle of protocol 2 or later)");
        }
        for (;;) {
            op_offset_ = pos_;
            const uint8_t op = byte();
            if (op == kStop) break;
            step(op);
        }
        if (pos_ != bytes_.size()) fail_here(bytes_.size() - pos_, " bytes follow STOP");
        const ObjectId result = pop("STOP");
        if (!stack_.empty() || !marks_.empty()) fail_here("STOP leaves ", stack_.size(), " objects on the stack");
        return state_dict(result);
    }

private:
    template <typename... Parts>
    [[noreturn]] void fail_here(Parts&&... parts) const {
        fail(source_, ": offset ", op_offset_, ": ", std::forward<Parts>(parts)...);
    }

    // --- reading the byte stream
    void need(size_t n) const {
        if (n > bytes_.size() - pos_) fail_here("truncated: opcode needs ", n, " more bytes");
    }
    uint8_t byte() {
        need(1);
        return bytes_[pos_++];
    }
    uint64_t little_endian(size_t n) {
        need(n);
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(bytes_[pos_ + i]) << (8 * i);
        pos_ += n;
        return v;
    }
    std::string line() {
        const size_t begin = pos_;
        while (pos_ < bytes_.size() && bytes_[pos_] != '\n') {
            if (pos_ - begin >= kMaxGlobalLineBytes) fail_here("GLOBAL name longer than ", kMaxGlobalLineBytes, " bytes");
            ++pos_;
        }
        if (pos_ == bytes_.size()) fail_here("truncated: GLOBAL name has no end of line");
        ++pos_;
        return std::string(reinterpret_cast<const char*>(bytes_.data() + begin), pos_ - 1 - begin);
    }

    // --- objects and the stack
    void count_creation() {
        if (++created_ > kTorchPickleMaxObjects) fail_here("more than ", kTorchPickleMaxObjects, " objects");
    }
    ObjectId make(Object object) {
        count_creation();
        objects_.push_back(std::move(object));
        return static_cast<ObjectId>(objects_.size() - 1);
    }
    void push(ObjectId id) {
        if (stack_.size() >= kTorchPickleMaxObjects) fail_here("stack deeper than ", kTorchPickleMaxObjects);
        stack_.push_back(id);
    }
    void push_new(Object object) { push(make(std::move(object))); }
    size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
    ObjectId pop(const char* opcode) {
        if (stack_.size() <= stack_floor()) fail_here(opcode, " on an empty stack");
        const ObjectId id = stack_.back();
        stack_.pop_back();
        return id;
    }
    ObjectId top(const char* opcode) const {
        if (stack_.size() <= stack_floor()) fail_here(opcode, " on an empty stack");
        return stack_.back();
    }
    std::vector<ObjectId> pop_to_mark(const char* opcode) {
        if (marks_.empty()) fail_here(opcode, " without a MARK");
        const size_t mark = marks_.back();
        marks_.pop_back();
        std::vector<ObjectId> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
        stack_.resize(mark);
        return items;
    }
    const Object& expect(ObjectId id, Kind kind, const char* what) const {
        const Object& object = objects_[id];
        if (object.kind != kind) fail_here(what, " must be ", kind_name(kind), ", not ", kind_name(object.kind));
        return object;
    }

    // --- opcodes
    void step(uint8_t op) {
        switch (op) {
            case kProto: {
                const uint8_t protocol = byte();
                if (op_offset_ != 0 || protocol != kProtocol) {
                    fail_here("PROTO ", int{protocol}, " (only one PROTO ", int{kProtocol},
                              " at the start is accepted; torch.save writes protocol 2 unless told otherwise)");
                }
                return;
            }
            case kMark:
                count_creation();
                marks_.push_back(stack_.size());
                return;
            case kNone: push_new(object_of(Kind::None)); return;
            case kNewTrue: push_new(object_of(Kind::Bool, 1)); return;
            case kNewFalse: push_new(object_of(Kind::Bool, 0)); return;
            case kBinInt: push_new(object_of(Kind::Int, static_cast<int32_t>(little_endian(4)))); return;
            case kBinInt1: push_new(object_of(Kind::Int, static_cast<int64_t>(little_endian(1)))); return;
            case kBinInt2: push_new(object_of(Kind::Int, static_cast<int64_t>(little_endian(2)))); return;
            case kLong1: {
                const size_t n = byte();
                if (n > kMaxLong1Bytes) fail_here("LONG1 of ", n, " bytes does not fit 64 bits");
                uint64_t v = little_endian(n);
                if (n > 0 && n < kMaxLong1Bytes && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign
                push_new(object_of(Kind::Int, static_cast<int64_t>(v)));
                return;
            }
            case kBinUnicode: {
                const uint64_t n = little_endian(4);
                need(n);
                Object s = object_of(Kind::String);
                s.text.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
                pos_ += n;
                push_new(std::move(s));
                return;
            }
            case kEmptyTuple: push_new(object_of(Kind::Tuple)); return;
            case kTuple: {
                Object t = object_of(Kind::Tuple);
                t.items = pop_to_mark("TUPLE");
                push_new(std::move(t));
                return;
            }
            case kTuple1:
            case kTuple2:
            case kTuple3: {
                const size_t n = static_cast<size_t>(op - kTuple1) + 1;
                Object t = object_of(Kind::Tuple);
                t.items.resize(n);
                for (size_t i = n; i-- > 0;) t.items[i] = pop("TUPLE1/2/3");
                push_new(std::move(t));
                return;
            }
            case kEmptyList: push_new(object_of(Kind::List)); return;
            case kEmptyDict: push_new(object_of(Kind::Dict)); return;
            case kAppend: {
                const ObjectId value = pop("APPEND");
                container(top("APPEND"), Kind::List, "APPEND").items.push_back(value);
                return;
            }
            case kAppends: {
                const std::vector<ObjectId> values = pop_to_mark("APPENDS");
                Object& list = container(top("APPENDS"), Kind::List, "APPENDS");
                list.items.insert(list.items.end(), values.begin(), values.end());
                return;
            }
            case kSetItem: {
                const ObjectId value = pop("SETITEM");
                const ObjectId key = pop("SETITEM");
                Object& dict = container(top("SETITEM"), Kind::Dict, "SETITEM");
                dict.items.push_back(key);
                dict.items.push_back(value);
                return;
            }
            case kSetItems: {
                const std::vector<ObjectId> pairs = pop_to_mark("SETITEMS");
                if (pairs.size() % 2 != 0) fail_here("SETITEMS with an odd number (", pairs.size(), ") of keys and values");
                Object& dict = container(top("SETITEMS"), Kind::Dict, "SETITEMS");
                dict.items.insert(dict.items.end(), pairs.begin(), pairs.end());
                return;
            }
            case kBinPut: memo_[static_cast<uint32_t>(little_endian(1))] = top("BINPUT"); return;
            case kLongBinPut: memo_[static_cast<uint32_t>(little_endian(4))] = top("LONG_BINPUT"); return;
            case kBinGet: get(static_cast<uint32_t>(little_endian(1))); return;
            case kLongBinGet: get(static_cast<uint32_t>(little_endian(4))); return;
            case kGlobal: global(); return;
            case kReduce: reduce(); return;
            case kBinPersId: persistent_id(); return;
            case kBuild: {
                const ObjectId state = pop("BUILD");
                const Object& target = objects_[top("BUILD")];
                // The state dict (an OrderedDict) carries its _metadata attribute this way; it is not needed.
                if (target.kind != Kind::Dict || objects_[state].kind != Kind::Dict) {
                    fail_here("BUILD of ", kind_name(target.kind), " with ", kind_name(objects_[state].kind),
                              " (only a dict's attributes may be set)");
                }
                return;
            }
            default: break;
        }
        for (const RefusedOpcode& refused : kRefusedOpcodes) {
            if (refused.code == op) fail_here("opcode ", refused.name, " is not accepted in a state dict pickle");
        }
        char hex[8];
        std::snprintf(hex, sizeof(hex), "0x%02x", op);
        fail_here("unknown opcode ", hex);
    }

    Object& container(ObjectId id, Kind kind, const char* opcode) {
        Object& object = objects_[id];
        if (object.kind != kind) fail_here(opcode, " on ", kind_name(object.kind), " (expected ", kind_name(kind), ")");
        return object;
    }

    void get(uint32_t index) {
        const auto it = memo_.find(index);
        if (it == memo_.end()) fail_here("BINGET of memo entry ", index, ", which was never set");
        push(it->second);
    }

    void global() {
        const std::string module = line();
        const std::string name = line();
        Object g = object_of(Kind::Global);
        g.text = module + "." + name;
        if (module == "collections" && name == "OrderedDict") {
            g.callable = Callable::OrderedDict;
        } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
            g.callable = Callable::RebuildTensorV2;
        } else if (module == "torch._utils" && name == "_rebuild_parameter") {
            g.callable = Callable::RebuildParameter;
        } else if (const StorageType* type = module == "torch" ? storage_type(name) : nullptr) {
            g.callable = Callable::StorageType;
            g.storage_type = type;
        } else {
            refuse_global(g.text);
        }
        push_new(std::move(g));
    }

    static const StorageType* storage_type(const std::string& name) {
        for (const StorageType& type : kStorageTypes) {
            if (name == type.name) return &type;
        }
        return nullptr;
    }

    [[noreturn]] void refuse_global(const std::string& name) const {
        fail_here("global '", name, "' is not allowed (a state dict pickle may use only collections.OrderedDict, "
                  "torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.*Storage; "
                  "nothing is imported or called)");
    }

    std::vector<int64_t> int_tuple(ObjectId id, const char* what) const {
        std::vector<int64_t> values;
        for (const ObjectId item : expect(id, Kind::Tuple, what).items) values.push_back(expect(item, Kind::Int, what).number);
        return values;
    }

    void reduce() {
        const ObjectId args_id = pop("REDUCE");
        const Object& callable = expect(pop("REDUCE"), Kind::Global, "REDUCE's callable");
        const std::vector<ObjectId> args = expect(args_id, Kind::Tuple, "REDUCE's arguments").items;
        switch (callable.callable) {
            case Callable::OrderedDict:
                if (!args.empty()) fail_here("collections.OrderedDict called with ", args.size(), " arguments (expected none)");
                push_new(object_of(Kind::Dict));
                return;
            case Callable::RebuildTensorV2: {
                if (args.size() != kRebuildTensorArgs && args.size() != kRebuildTensorArgsWithMetadata) {
                    fail_here("torch._utils._rebuild_tensor_v2 called with ", args.size(), " arguments (expected ",
                              kRebuildTensorArgs, " or ", kRebuildTensorArgsWithMetadata, ")");
                }
                const Object& storage = expect(args[0], Kind::Storage, "_rebuild_tensor_v2's storage");
                TorchPickledTensor tensor;
                tensor.dtype = storage.storage_type->dtype;
                tensor.storage_key = storage.text;
                tensor.storage_numel = storage.number;
                tensor.storage_offset = expect(args[1], Kind::Int, "_rebuild_tensor_v2's storage offset").number;
                tensor.shape = int_tuple(args[2], "_rebuild_tensor_v2's size");
                tensor.stride = int_tuple(args[3], "_rebuild_tensor_v2's stride");
                expect(args[4], Kind::Bool, "_rebuild_tensor_v2's requires_grad");
                if (!expect(args[5], Kind::Dict, "_rebuild_tensor_v2's backward hooks").items.empty()) {
                    fail_here("tensor with backward hooks");
                }
                if (args.size() == kRebuildTensorArgsWithMetadata &&
                    !expect(args[6], Kind::Dict, "_rebuild_tensor_v2's metadata").items.empty()) {
                    fail_here("tensor with metadata (only plain dense tensors are read)");
                }
                Object t = object_of(Kind::Tensor, static_cast<int64_t>(tensors_.size()));
                tensors_.push_back(std::move(tensor));
                push_new(std::move(t));
                return;
            }
            case Callable::RebuildParameter: {
                if (args.size() != kRebuildParameterArgs) {
                    fail_here("torch._utils._rebuild_parameter called with ", args.size(), " arguments (expected ",
                              kRebuildParameterArgs, ")");
                }
                expect(args[0], Kind::Tensor, "_rebuild_parameter's data");
                expect(args[1], Kind::Bool, "_rebuild_parameter's requires_grad");
                if (!expect(args[2], Kind::Dict, "_rebuild_parameter's backward hooks").items.empty()) {
                    fail_here("parameter with backward hooks");
                }
                push(args[0]);
                return;
            }
            case Callable::StorageType: fail_here("REDUCE calls ", callable.text, ", which may only name a storage type");
        }
    }

    void persistent_id() {
        const Object& pid = expect(pop("BINPERSID"), Kind::Tuple, "BINPERSID's persistent id");
        if (pid.items.size() != kPersistentIdFields ||
            expect(pid.items[0], Kind::String, "a persistent id's tag").text != kPersistentIdTag) {
            fail_here("persistent id is not ('storage', type, key, location, numel)");
        }
        const Object& type = expect(pid.items[1], Kind::Global, "a persistent id's storage type");
        if (!type.storage_type) fail_here("persistent id names ", type.text, ", not a storage type");
        Object storage = object_of(Kind::Storage);
        storage.storage_type = type.storage_type;
        storage.text = expect(pid.items[2], Kind::String, "a persistent id's key").text;
        expect(pid.items[3], Kind::String, "a persistent id's location");
        storage.number = expect(pid.items[4], Kind::Int, "a persistent id's numel").number;
        if (storage.text.empty() || storage.text.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != std::string::npos) {
            fail_here("storage key '", storage.text, "' is not a plain record name");
        }
        if (storage.number < 0) fail_here("storage '", storage.text, "' has negative numel ", storage.number);
        push_new(std::move(storage));
    }

    // The pickle's result: a dict of tensor names to tensors.
    std::vector<TorchPickledTensor> state_dict(ObjectId result) {
        const Object& dict = objects_[result];
        if (dict.kind != Kind::Dict) fail(source_, ": the pickle holds ", kind_name(dict.kind), ", not a state dict");
        std::vector<TorchPickledTensor> out;
        std::set<std::string> names;
        for (size_t i = 0; i < dict.items.size(); i += 2) {
            const Object& key = objects_[dict.items[i]];
            if (key.kind != Kind::String) fail(source_, ": state dict key is ", kind_name(key.kind), ", not a name");
            const Object& value = objects_[dict.items[i + 1]];
            if (value.kind != Kind::Tensor) {
                fail(source_, ": state dict entry '", key.text, "' is ", kind_name(value.kind), ", not a tensor");
            }
            if (!names.insert(key.text).second) fail(source_, ": tensor '", key.text, "' appears twice");
            TorchPickledTensor tensor = tensors_[static_cast<size_t>(value.number)];
            tensor.name = key.text;
            out.push_back(std::move(tensor));
        }
        return out;
    }

    std::span<const uint8_t> bytes_;
    const std::string& source_;
    size_t pos_ = 0;
    size_t op_offset_ = 0;
    uint64_t created_ = 0;
    std::vector<Object> objects_;
    std::vector<ObjectId> stack_;
    std::vector<size_t> marks_;  // stack sizes at each open MARK
    std::unordered_map<uint32_t, ObjectId> memo_;
    std::vector<TorchPickledTensor> tensors_;
};

}  // namespace

size_t torch_dtype_element_size(const std::string& dtype) {
    for (const StorageType& type : kStorageTypes) {
        if (dtype == type.dtype) return type.element_size;
    }
    fail("unknown torch dtype '", dtype, "'");
}

std::vector<TorchPickledTensor> read_torch_state_dict_pickle(std::span<const uint8_t> pickle, const std::string& source) {
    return Unpickler(pickle, source).run();
}

}  // namespace dendro
