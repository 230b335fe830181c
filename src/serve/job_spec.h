// From a validated request to the job the scheduler runs: the prompt tokenized (chat messages rendered in
// the server's chat format, with their message ends as cache checkpoints), its length checked, a random
// seed drawn when the request gave none.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "serve/chat_format.h"
#include "serve/job.h"
#include "serve/request.h"
#include "tokenizer/tokenizer.h"

namespace dendro::serve {

struct PromptLimits {
    int64_t max_prompt_tokens = 8192;
    std::chrono::steady_clock::duration timeout = std::chrono::minutes(10);
};

// Throws ApiError 400 for a prompt that encodes to no tokens or to more than max_prompt_tokens.
JobSpec make_job_spec(const GenerationRequest& request, const Tokenizer& tokenizer, ChatFormat chat_format,
                      const PromptLimits& limits, std::string id);

}  // namespace dendro::serve
