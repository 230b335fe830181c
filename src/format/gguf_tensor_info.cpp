// Shape helpers of a GGUF tensor description.
#include "common/error.h"
#include "format/gguf.h"

namespace dendro {

int64_t GgufTensorInfo::n_elements() const {
    int64_t n = 1;
    for (const int64_t d : ne) n *= d;  // the reader and writer reject shapes whose product overflows
    return n;
}

int64_t GgufTensorInfo::n_rows() const {
    int64_t rows = 1;
    for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
    return rows;
}

std::string GgufTensorInfo::shape_string() const {
    std::string out = "{";
    for (size_t i = 0; i < ne.size(); ++i) out += concat(i ? ", " : "", ne[i]);
    return out + "}";
}

}  // namespace dendro
