// A restricted unpickler for the data.pkl of a torch.save'd state dict. It understands only what such a
// pickle holds: a dict (collections.OrderedDict) of names to tensors rebuilt by
// torch._utils._rebuild_tensor_v2 (or _rebuild_parameter) from storages given as persistent ids
// ('storage', torch.<Type>Storage, key, location, numel). It never imports or calls anything: each accepted
// global is matched by name and interpreted here, and every other global or opcode is refused with an error
// naming it and its offset.
//
// Opcodes accepted (those of pickle protocol 2 that torch emits for a state dict): PROTO (2), STOP, MARK,
// NONE, NEWTRUE, NEWFALSE, BININT, BININT1, BININT2, LONG1 (up to 8 bytes), BINUNICODE, EMPTY_TUPLE, TUPLE,
// TUPLE1, TUPLE2, TUPLE3, EMPTY_LIST, APPEND, APPENDS, EMPTY_DICT, SETITEM, SETITEMS, BINPUT, LONG_BINPUT,
// BINGET, LONG_BINGET, GLOBAL, REDUCE, BINPERSID, BUILD (only to set a dict's attributes, e.g. the state
// dict's _metadata, which is dropped).
// Globals accepted: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter,
// torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dendro {

// The largest data.pkl read and the most objects it may create: a state dict of thousands of tensors needs
// a few hundred KB and some 10^5 objects, so these only stop a crafted pickle from exhausting memory.
inline constexpr uint64_t kTorchPickleMaxBytes = uint64_t{64} << 20;
inline constexpr uint64_t kTorchPickleMaxObjects = uint64_t{1} << 20;

// One tensor of the state dict as the pickle describes it; the storage's bytes are the zip record
// data/<storage_key>.
struct TorchPickledTensor {
    std::string name;
    std::string dtype;  // the storage type in safetensors' spelling: "F32", "F16", "BF16", "I64", ...
    std::string storage_key;
    int64_t storage_numel = 0;   // elements, as the persistent id says
    int64_t storage_offset = 0;  // elements
    std::vector<int64_t> shape;
    std::vector<int64_t> stride;  // elements
};

// Element size of a dtype read_torch_state_dict_pickle can report.
size_t torch_dtype_element_size(const std::string& dtype);

// The tensors of the state dict `pickle` holds, in pickle order; `source` names it in errors
// ("<source>: offset N: ...").
std::vector<TorchPickledTensor> read_torch_state_dict_pickle(std::span<const uint8_t> pickle, const std::string& source);

}  // namespace dendro
