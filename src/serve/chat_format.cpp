#include "serve/chat_format.h"

#include <algorithm>

#include "common/error.h"

namespace dendro::serve {
namespace {

constexpr const char* kInstOpen = "[INST]";
constexpr const char* kInstClose = "[/INST]";
constexpr const char* kMistralEos = "</s>";

struct RenderedChat {
    std::string text;
    std::vector<size_t> message_ends;  // byte offsets in text
};

RenderedChat render(ChatFormat format, const std::vector<ChatMessage>& messages) {
    RenderedChat out;
    if (format == ChatFormat::Plain) {
        for (const ChatMessage& m : messages) {
            out.text += m.content;
            out.text += '\n';
            out.message_ends.push_back(out.text.size());
        }
        return out;
    }
    std::string system;  // waits for the first user message
    bool system_used = false;
    for (const ChatMessage& m : messages) {
        if (m.role == "system") {
            system += (system.empty() ? "" : "\n\n") + m.content;
        } else if (m.role == "user") {
            out.text += concat(kInstOpen, " ");
            if (!system.empty() && !system_used) out.text += system + "\n\n";
            system_used = true;
            out.text += m.content + kInstClose;
        } else {
            out.text += " " + m.content + kMistralEos;
        }
        if (m.role != "system") out.message_ends.push_back(out.text.size());
    }
    return out;
}

bool is_single_control_token(const Tokenizer& tokenizer, const std::string& text) {
    const std::vector<int32_t> ids = tokenizer.encode(text, /*add_bos=*/false);
    return ids.size() == 1 && tokenizer.token_text(ids[0]) == text;
}

}  // namespace

const char* chat_format_name(ChatFormat format) { return format == ChatFormat::Plain ? "plain" : "mistral-v3"; }

std::optional<ChatFormat> parse_chat_format(const std::string& text) {
    if (text == "auto") return std::nullopt;
    if (text == "plain") return ChatFormat::Plain;
    if (text == "mistral-v3") return ChatFormat::MistralV3;
    fail("--chat-format must be auto, plain or mistral-v3, got '", text, "'");
}

ChatFormat detect_chat_format(const Tokenizer& tokenizer) {
    return is_single_control_token(tokenizer, kInstOpen) && is_single_control_token(tokenizer, kInstClose)
               ? ChatFormat::MistralV3
               : ChatFormat::Plain;
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages) {
    return render(format, messages).text;
}

ChatPrompt chat_prompt(ChatFormat format, const std::vector<ChatMessage>& messages, const Tokenizer& tokenizer) {
    const RenderedChat rendered = render(format, messages);
    const bool add_bos = tokenizer.add_bos_default();
    ChatPrompt prompt;
    prompt.tokens = tokenizer.encode(rendered.text, add_bos);
    for (size_t end : rendered.message_ends) {
        if (end == rendered.text.size()) {
            prompt.message_ends.push_back(static_cast<int64_t>(prompt.tokens.size()));
            continue;
        }
        const std::vector<int32_t> head = tokenizer.encode(std::string_view(rendered.text).substr(0, end), add_bos);
        if (head.size() <= prompt.tokens.size() && std::equal(head.begin(), head.end(), prompt.tokens.begin())) {
            prompt.message_ends.push_back(static_cast<int64_t>(head.size()));
        }
    }
    return prompt;
}

}  // namespace dendro::serve
