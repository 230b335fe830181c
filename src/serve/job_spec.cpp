#include "serve/job_spec.h"

#include <random>

#include "common/error.h"
#include "serve/api_error.h"

namespace dendro::serve {

JobSpec make_job_spec(const GenerationRequest& request, const Tokenizer& tokenizer, ChatFormat chat_format,
                      const PromptLimits& limits, std::string id) {
    JobSpec spec;
    spec.id = std::move(id);
    const bool chat = request.endpoint == Endpoint::ChatCompletions;
    if (chat) {
        ChatPrompt prompt = chat_prompt(chat_format, request.messages, tokenizer);
        spec.prompt = std::move(prompt.tokens);
        spec.checkpoints = std::move(prompt.message_ends);
    } else {
        spec.prompt = tokenizer.encode(request.prompt, tokenizer.add_bos_default());
    }
    const char* param = chat ? "messages" : "prompt";
    if (spec.prompt.empty()) throw invalid_request(param, "the prompt encodes to no tokens");
    if (static_cast<int64_t>(spec.prompt.size()) > limits.max_prompt_tokens) {
        throw invalid_request(
            param,
            concat("the prompt has ", spec.prompt.size(), " tokens, more than this server's limit of ",
                   limits.max_prompt_tokens, " (--max-prompt-tokens)"),
            "context_length_exceeded");
    }
    spec.sampling = request.sampling;
    if (!request.seed_given) spec.sampling.seed = std::random_device{}();
    spec.max_tokens = request.max_tokens;
    spec.stop = request.stop;
    spec.top_logprobs = request.top_logprobs;
    spec.timeout = limits.timeout;
    return spec;
}

}  // namespace dendro::serve
