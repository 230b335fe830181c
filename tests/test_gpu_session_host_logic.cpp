// The host side of device sampling: a row that got kNoSampledToken (all logits NaN or -inf) is one clear
// error naming its sequence slot, not a token id of -1 handed to the detokenizer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../kernels/ops/sampled_tokens.h"
#include "common/error.h"

namespace dendro {
namespace {

using cuda::check_sampled_tokens;
using cuda::kNoSampledToken;

TEST(SampledTokens, ValidTokensPass) {
    const std::vector<int32_t> tokens{0, 5, 50279};
    const std::vector<int> seqs{3, 1, 7};
    EXPECT_NO_THROW(check_sampled_tokens(tokens, seqs));
}

TEST(SampledTokens, NoTokenNamesTheSlot) {
    const std::vector<int32_t> tokens{4, kNoSampledToken, kNoSampledToken};
    const std::vector<int> seqs{3, 9, 1};
    try {
        check_sampled_tokens(tokens, seqs);
        FAIL() << "no error";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("sequence slot 9 is NaN or -inf"), std::string::npos) << what;
    }
}

}  // namespace
}  // namespace dendro
