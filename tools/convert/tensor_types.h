// What `--outtype` asks for, and the type each tensor of a file is stored in for it: the per-tensor rules
// of llama.cpp's quantizer (src/llama-quant.cpp), which any architecture's tensors go through by name.
//
// A tensor is quantized (stored in the out type's types) only if its name ends in "weight", it has at least
// two dimensions (trailing 1s not counted), and it is no norm ("_norm.weight") and no convolution
// ("ssm_conv1d"); every other tensor (norms, biases, the conv1d weight, ssm_a, ssm_d) is F32, as llama.cpp's
// converter writes them and its quantizer keeps them. Quantized tensors take the out type's default type,
// except the output matrix ("output.weight", or "token_embd.weight" when the output is tied to it): Q6_K for
// the k-quant mixes and Q4_0 (Q8_0 when its rows are not whole blocks of the default type). A row length
// that is not a whole number of the chosen type's blocks falls back as llama.cpp does: Q4_K -> Q5_0,
// Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 when that does not fit either; Q4_0 and Q8_0 -> F16. (Checked: for
// the bundled model every tensor's type equals that of llama.cpp's quantizer of llama-cpp-python 0.3.36.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/ggml_types.h"

namespace dendro {

enum class OutType { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K };

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"; throws naming the choices. `what` names
// the flag in the error ("--outtype").
OutType parse_out_type(const std::string& text, const std::string& what = "output type");
const char* out_type_name(OutType type);
std::string out_type_names();  // "f32, f16, ..., q6_k" for help texts
uint32_t out_type_file_type(OutType type);  // general.file_type: llama_ftype numbering (llama.h)

// The type tensor `name` of shape `ne` (ggml order: ne[0] is the row length) is stored in; `output_tied`:
// the file has no output.weight, so token_embd.weight is the output matrix too.
GgmlType tensor_storage_type(const std::string& name, const std::vector<int64_t>& ne, OutType out_type,
                             bool output_tied);

}  // namespace dendro
