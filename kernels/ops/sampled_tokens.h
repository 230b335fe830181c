// What device sampling (sampling.h) hands back for a row with no usable logit, and the host's check of it.
// Pure C++ (no CUDA headers), so that the CPU suite tests it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/error.h"

namespace dendro::cuda {

// The token of a row whose logits are all NaN or -inf: no distribution to sample from.
inline constexpr int32_t kNoSampledToken = -1;

// Fails naming the first sequence slot (seqs[i] for tokens[i]) that got kNoSampledToken.
inline void check_sampled_tokens(std::span<const int32_t> tokens, std::span<const int> seqs) {
    for (size_t i = 0; i < tokens.size() && i < seqs.size(); ++i) {
        if (tokens[i] == kNoSampledToken) {
            fail("decode_sample: every logit of sequence slot ", seqs[i],
                 " is NaN or -inf: the model gave no distribution to sample (try --device cpu to compare)");
        }
    }
}

}  // namespace dendro::cuda
