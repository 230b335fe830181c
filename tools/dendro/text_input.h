// Text inputs of the subcommands (prompts, files to tokenize or score).
#pragma once

#include <cstdint>
#include <string>

namespace dendro::cli {

// Texts larger than this are refused rather than read into memory whole.
inline constexpr uintmax_t kMaxTextFileBytes = uintmax_t{1} << 30;

// The whole file as bytes. A FIFO or pipe (`-f /dev/stdin`, `-f <(command)`) is read to its end; anything
// else that is not a regular file (a directory, a device), a missing or unreadable file, or one larger than
// kMaxTextFileBytes is a dendro::Error naming the path.
std::string read_text_file(const std::string& path);

}  // namespace dendro::cli
