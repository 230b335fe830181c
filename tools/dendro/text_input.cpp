#include "text_input.h"

#include "format/regular_file.h"

namespace dendro::cli {

std::string read_text_file(const std::string& path) {
    return read_whole_file(path, kMaxTextFileBytes, PipeInput::accept);
}

}  // namespace dendro::cli
