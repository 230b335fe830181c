// Error type of the library: every failure a user can cause (bad file, bad key, bad flag) is thrown as
// dendro::Error with a message that names the file, tensor or key involved; tools print it as one line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dendro {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Builds a message from any streamable parts: concat("tensor ", name, ": bad shape").
template <typename... Parts>
std::string concat(Parts&&... parts) {
    std::ostringstream out;
    (out << ... << std::forward<Parts>(parts));
    return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
    throw Error(concat(std::forward<Parts>(parts)...));
}

}  // namespace dendro
