#include "serve/metrics.h"

#include <sstream>

namespace dendro::serve {
namespace {

void metric(std::ostringstream& out, const char* name, const char* type, const char* help, double value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
        << name << ' ' << value << '\n';
}

}  // namespace

void LatencyHistogram::observe(double seconds) {
    std::lock_guard lock(mutex_);
    size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    if (i < kBounds.size()) ++counts_[i];
    ++count_;
    sum_ += seconds;
}

std::string LatencyHistogram::render(const std::string& name, const std::string& help) const {
    std::lock_guard lock(mutex_);
    std::ostringstream out;
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " histogram\n";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBounds.size(); ++i) {
        cumulative += counts_[i];
        out << name << "_bucket{le=\"" << kBounds[i] << "\"} " << cumulative << '\n';
    }
    out << name << "_bucket{le=\"+Inf\"} " << count_ << '\n'
        << name << "_sum " << sum_ << '\n'
        << name << "_count " << count_ << '\n';
    return out.str();
}

std::string ServeMetrics::render() const {
    std::ostringstream out;
    metric(out, "dendro_requests_total", "counter", "Generation requests accepted", requests.load());
    metric(out, "dendro_requests_rejected_total", "counter", "Requests answered with an error before queueing",
           requests_rejected.load());
    metric(out, "dendro_requests_finished_total", "counter", "Generation requests finished", requests_finished.load());
    metric(out, "dendro_requests_cancelled_total", "counter",
           "Generation requests cancelled (disconnect, timeout, shutdown)", requests_cancelled.load());
    metric(out, "dendro_prompt_tokens_total", "counter", "Prompt tokens of accepted requests", prompt_tokens.load());
    metric(out, "dendro_generated_tokens_total", "counter", "Tokens generated", generated_tokens.load());
    metric(out, "dendro_prefix_cache_cached_tokens_total", "counter", "Prompt tokens restored from the prefix cache",
           cached_tokens.load());
    metric(out, "dendro_prefix_cache_hits_total", "counter", "Prompt lookups that restored a prefix",
           cache_hits.load());
    metric(out, "dendro_prefix_cache_misses_total", "counter", "Prompt lookups that found no prefix",
           cache_misses.load());
    metric(out, "dendro_queue_depth", "gauge", "Requests waiting for a sequence slot",
           static_cast<double>(queue_depth.load()));
    metric(out, "dendro_active_sequences", "gauge", "Sequence slots in use",
           static_cast<double>(active_sequences.load()));
    out << time_to_first_token.render("dendro_time_to_first_token_seconds",
                                      "From queueing to the first generated token");
    out << inter_token_latency.render("dendro_inter_token_latency_seconds", "Between consecutive generated tokens");
    out << request_duration.render("dendro_request_duration_seconds", "From queueing to the end of generation");
    return out.str();
}

}  // namespace dendro::serve
