#include "text_input.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "error.h"

namespace dendro::cli {

std::string read_text_file(const std::string& path) {
    std::error_code error;
    const auto status = std::filesystem::status(path, error);
    if (error) fail(path, ": cannot open: ", error.message());
    if (!std::filesystem::is_regular_file(status)) fail(path, ": not a regular file");
    const uintmax_t size = std::filesystem::file_size(path, error);
    if (error) fail(path, ": cannot read its size: ", error.message());
    if (size > kMaxTextFileBytes) fail(path, ": ", size, " bytes is more text than the ", kMaxTextFileBytes, " accepted");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open: ", std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) fail(path, ": read error");
    return text;
}

}  // namespace dendro::cli
