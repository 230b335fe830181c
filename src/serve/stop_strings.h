// Stop strings over streamed text: text is passed on as soon as it can no longer be the start of a stop
// string, and generation ends at the first stop string, which is not part of the output.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dendro::serve {

class StopStringFilter {
public:
    explicit StopStringFilter(std::vector<std::string> stops);
    // Text that is safe to show now. After a stop string is seen, stopped() is true and nothing more comes.
    std::string push(std::string_view piece);
    // What is held back at the end of generation (no stop string can complete any more).
    std::string flush();
    bool stopped() const { return stopped_; }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
};

}  // namespace dendro::serve
