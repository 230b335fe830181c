// Chat formats: how a list of messages becomes the prompt text of a model.
//   plain       the contents one after another, each followed by a newline (base models)
//   mistral-v3  "[INST] user[/INST] assistant</s>[INST] user[/INST]" with the [INST]/[/INST] control tokens
//               of Mistral's v3 tokenizer (Mistral-7B-Instruct-v0.3, Codestral); a system message is put in
//               front of the first user message, separated by a blank line, so that a conversation's earlier
//               turns stay a prefix of its later ones (the prefix cache resumes them).
// The end of every message is a checkpoint of the prefix cache.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dendro::serve {

enum class ChatFormat { Plain, MistralV3 };

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

// "plain" / "mistral-v3"; parse_chat_format also takes "auto" (nullopt). Throws dendro::Error otherwise.
const char* chat_format_name(ChatFormat format);
std::optional<ChatFormat> parse_chat_format(const std::string& text);

// mistral-v3 when the vocabulary has [INST] and [/INST] as single control tokens, else plain.
ChatFormat detect_chat_format(const Tokenizer& tokenizer);

struct ChatPrompt {
    std::vector<int32_t> tokens;
    // Token counts at which a message ends and the tokens of the whole text agree with those of the text up
    // to there (where a token straddles the boundary, there is no checkpoint for it).
    std::vector<int64_t> message_ends;
};

// The prompt text of `messages`, ready for the assistant's next reply.
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages);
// Renders and tokenizes (BOS as the vocabulary says), finding the message ends.
ChatPrompt chat_prompt(ChatFormat format, const std::vector<ChatMessage>& messages, const Tokenizer& tokenizer);

}  // namespace dendro::serve
