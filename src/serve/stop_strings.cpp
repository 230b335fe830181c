#include "serve/stop_strings.h"

#include <algorithm>

namespace dendro::serve {

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopStringFilter::push(std::string_view piece) {
    if (stopped_) return {};
    held_ += piece;
    size_t first = std::string::npos;
    for (const std::string& stop : stops_) first = std::min(first, held_.find(stop));
    if (first != std::string::npos) {
        stopped_ = true;
        std::string out = held_.substr(0, first);
        held_.clear();
        return out;
    }
    // Keep the longest tail that is the start of some stop string; everything before it is final.
    size_t keep_from = held_.size();
    for (const std::string& stop : stops_) {
        const size_t longest = std::min(stop.size() - 1, held_.size());
        for (size_t len = longest; len > 0; --len) {
            if (held_.compare(held_.size() - len, len, stop, 0, len) == 0) {
                keep_from = std::min(keep_from, held_.size() - len);
                break;
            }
        }
    }
    std::string out = held_.substr(0, keep_from);
    held_.erase(0, keep_from);
    return out;
}

std::string StopStringFilter::flush() {
    std::string out;
    out.swap(held_);
    return stopped_ ? std::string() : out;
}

}  // namespace dendro::serve
