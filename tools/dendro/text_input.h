// Text inputs of the subcommands (prompts, files to tokenize or score).
#pragma once

#include <cstdint>
#include <string>

namespace dendro::cli {

// Texts larger than this are refused rather than read into memory whole.
inline constexpr uintmax_t kMaxTextFileBytes = uintmax_t{1} << 30;

// The whole file as bytes; throws dendro::Error naming the path when it is missing, not a regular file,
// larger than kMaxTextFileBytes or unreadable.
std::string read_text_file(const std::string& path);

}  // namespace dendro::cli
