#include "generate/generation.h"

#include <chrono>

#include "common/error.h"

namespace dendro {

GenerationResult generate(Backend& backend, const Tokenizer& tokenizer, int seq, std::span<const float> logits,
                          std::span<const int32_t> history, const SamplingParams& params, int32_t max_new_tokens,
                          const std::function<void(std::string_view)>& on_text, bool stop_at_eog,
                          const TokenObserver& on_token) {
    const int64_t n_vocab = backend.hparams().n_vocab;
    if (static_cast<int64_t>(logits.size()) != n_vocab) {
        fail("generate: expected ", n_vocab, " logits, got ", logits.size());
    }
    if (max_new_tokens < 0) fail("generate: negative token budget ", max_new_tokens);

    Sampler sampler(params, static_cast<int32_t>(n_vocab));
    for (int32_t id : history) sampler.accept(id);
    StreamDecoder stream(tokenizer, history);
    std::vector<float> current(logits.begin(), logits.end());

    // Settings the backend can sample with on its own device, so that only token ids cross to the host;
    // min-p and the repetition penalty need the host Sampler. The first token comes from the prompt's
    // logits, which are on the host already.
    const bool try_device_sampling = params.min_p == 0.0f && params.repeat_penalty == 1.0f && !on_token;
    DeviceSampling device_sampling;
    device_sampling.temperature = params.temperature;
    device_sampling.top_k = params.top_k;
    device_sampling.top_p = params.top_p;
    device_sampling.seed = params.seed;

    GenerationResult result;
    const auto start = std::chrono::steady_clock::now();
    int32_t token = sampler.sample(current);
    result.first_token_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (int32_t i = 0; i < max_new_tokens; ++i) {
        if (on_token) on_token(token, current);
        if (stop_at_eog && tokenizer.is_end_of_generation(token)) {
            result.stopped_at_eog = true;
            break;
        }
        sampler.accept(token);
        result.tokens.push_back(token);
        if (const std::string text = stream.push(token); !text.empty()) on_text(text);
        if (i + 1 == max_new_tokens) break;  // the budget is spent: no need to compute logits we won't use
        const int seqs[] = {seq};
        const int32_t tokens[] = {token};
        int32_t next[] = {0};
        ++result.decode_steps;
        if (try_device_sampling && backend.decode_sample(seqs, tokens, device_sampling, next)) {
            token = next[0];
        } else {
            backend.decode(seqs, tokens, current);
            token = sampler.sample(current);
        }
    }
    result.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (const std::string rest = stream.flush(); !rest.empty()) on_text(rest);
    return result;
}

}  // namespace dendro
