// Timing helpers of the subcommands that report speeds (run, bench, cache bench).
#pragma once

#include <chrono>
#include <vector>

namespace dendro::cli {

double seconds_since(std::chrono::steady_clock::time_point start);

struct MeanSd {
    double mean = 0.0;
    double sd = 0.0;  // sample standard deviation; 0 for fewer than two values
};
MeanSd mean_and_sd(const std::vector<double>& values);
// The middle value (the mean of the two middle ones for an even count); 0 for none.
double median(std::vector<double> values);

}  // namespace dendro::cli
