// The pieces the double-precision reference forward passes of the CPU tests share (test_cpu_backend.cpp
// for Mamba-1, test_cpu_mamba2.cpp for Mamba-2), written from HF's equations independently of src/cpu.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace dendro::test {

// Every element of the tensor, row after row, dequantised (empty for an absent optional tensor).
std::vector<double> to_double(const TensorView& t);

double silu(double x);
double softplus(double x);  // torch's, with beta 1 and threshold 20

// y = W x (+ b): W is n_out rows of n_in; b may be empty.
std::vector<double> linear(const std::vector<double>& w, const std::vector<double>& b, const double* x, int64_t n_in,
                           int64_t n_out);

}  // namespace dendro::test
