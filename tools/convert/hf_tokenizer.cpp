#include "hf_tokenizer.h"

#include <charconv>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/checked_int.h"
#include "common/error.h"
#include "hf_json.h"
#include "format/regular_file.h"
#include "tokenizer/spm_model_proto.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/spm.h"
#include "tokenizer/vocab.h"

namespace dendro {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kTokenizerJson = "tokenizer.json";
constexpr const char* kTokenizerConfigJson = "tokenizer_config.json";
constexpr const char* kConfigJson = "config.json";
constexpr const char* kGenerationConfigJson = "generation_config.json";
constexpr const char* kSpmFileNames[] = {"tokenizer.model", "tokenizer.model.v3"};

constexpr std::string_view kBpePreGpt2 = "gpt-2";
// What llama.cpp's converter writes for the GPT-NeoX-20B tokenizer.json (its hash names MPT and then OLMo, the
// later match winning), so that both converters give one checkpoint the same key; "mpt" means the same.
constexpr std::string_view kBpePreGptNeox = "olmo";
constexpr std::string_view kSpmPre = "default";     // what llama.cpp's converter writes for SentencePiece
constexpr float kPaddingScore = -10000.0f;          // llama.cpp's score for padding pieces
constexpr float kAddedTokenScore = -1000.0f;        // llama.cpp's score for added tokens
// Byte-level BPE writes a space inside a merge part as U+0120 (what byte 0x20 maps to), as llama.cpp does for
// the list-of-pairs merges format.
constexpr std::string_view kEncodedSpace = "\xC4\xA0";

struct Vocab {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::vector<float> scores;  // SentencePiece only
};

// Special ids and add_bos/add_eos gathered the way llama.cpp's gguf-py SpecialVocab does: the first source
// that sets an id wins.
struct SpecialTokens {
    std::map<std::string, int64_t> ids;  // "bos", "eos", "unk", "pad"
    std::optional<bool> add_bos, add_eos;
};
constexpr const char* kSpecialKinds[] = {"bos", "eos", "unk", "pad"};

std::string path_in(const std::string& dir, const char* name) { return (fs::path(dir) / name).string(); }

std::string padding_token(int64_t id) { return concat("[PAD", id, "]"); }

// llama.cpp's converter also types these added tokens CONTROL when the tokenizer does not call them special.
bool looks_special(std::string_view text) {
    constexpr std::string_view kOpen = "<|", kClose = "|>";
    constexpr std::string_view kWideOpen = "<\xEF\xBD\x9C", kWideClose = "\xEF\xBD\x9C>";  // <｜ ... ｜>
    const auto wrapped = [&](std::string_view open, std::string_view close) {
        return text.size() >= open.size() + close.size() && text.starts_with(open) && text.ends_with(close);
    };
    return wrapped(kOpen, kClose) || wrapped(kWideOpen, kWideClose);
}

const json* member(const json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    const auto found = object.find(key);
    return found == object.end() || found->is_null() ? nullptr : &*found;
}

// A special-token entry of tokenizer_config.json: a string, or an object with "content".
std::optional<std::string> special_token_content(const json& entry) {
    if (entry.is_string()) return entry.get<std::string>();
    if (const json* content = member(entry, "content"); content && content->is_string()) {
        return content->get<std::string>();
    }
    return std::nullopt;
}

void set_special_id(SpecialTokens& special, const std::string& kind, const json& value, int64_t n_tokens,
                    const std::string& source) {
    if (!value.is_number_integer()) return;  // absent, null, or a list (several ids): not a single id
    const std::optional<uint64_t> id = json_unsigned(value);
    if (!id || !is_index_below(*id, n_tokens)) {
        fail(source, ": the ", kind, " token id ", value.dump(), " is out of range for a vocabulary of ", n_tokens,
             " tokens");
    }
    special.ids.try_emplace(kind, static_cast<int64_t>(*id));
}

// add_bos/add_eos from a TemplateProcessing (or RobertaProcessing) post-processor: a template for a single
// sequence that starts (ends) with a special token adds BOS (EOS).
void read_post_processor(const json& tokenizer, SpecialTokens& special) {
    const json* post = member(tokenizer, "post_processor");
    if (!post) return;
    std::vector<const json*> processors;
    if (const json* list = member(*post, "processors"); list && list->is_array()) {
        for (const json& p : *list) processors.push_back(&p);
    } else {
        processors.push_back(post);
    }
    for (const json* processor : processors) {
        const json* type = member(*processor, "type");
        if (!type || !type->is_string()) continue;
        if (*type == "RobertaProcessing") {
            special.add_bos = true;
            special.add_eos = true;
        } else if (*type == "TemplateProcessing") {
            const json* single = member(*processor, "single");
            if (!single || !single->is_array() || single->size() < 2) continue;
            special.add_bos = member(single->front(), "SpecialToken") != nullptr;
            special.add_eos = member(single->back(), "SpecialToken") != nullptr;
        }
    }
}

// tokenizer_config.json: add_bos_token/add_eos_token, and the special tokens named by content, resolved
// through tokenizer.json's added tokens.
void read_tokenizer_config(const json& config, const json* added_tokens, int64_t n_tokens, const std::string& source,
                           SpecialTokens& special) {
    if (const json* add = member(config, "add_bos_token"); add && add->is_boolean()) special.add_bos = add->get<bool>();
    if (const json* add = member(config, "add_eos_token"); add && add->is_boolean()) special.add_eos = add->get<bool>();
    if (!added_tokens) return;
    for (const char* kind : kSpecialKinds) {
        const json* entry = member(config, concat(kind, "_token").c_str());
        const std::optional<std::string> content = entry ? special_token_content(*entry) : std::nullopt;
        if (!content) continue;
        for (const json& token : *added_tokens) {
            const json* token_content = member(token, "content");
            if (token_content && *token_content == *content) {
                if (const json* id = member(token, "id")) set_special_id(special, kind, *id, n_tokens, source);
                break;
            }
        }
    }
}

// Special ids from config.json or generation_config.json (`*_token_id`); ids set earlier win, and lists
// (several end ids in a generation config) carry no single id.
void read_model_config_ids(const std::string& dir, const char* file_name, int64_t n_tokens, SpecialTokens& special) {
    const std::string path = path_in(dir, file_name);
    if (!fs::is_regular_file(path)) return;
    const json config = read_hf_json_file(path);
    for (const char* kind : kSpecialKinds) {
        const std::string key = concat(kind, "_token_id");
        const json* id = member(config, key.c_str());
        if (!id) {
            if (const json* text_config = member(config, "text_config")) id = member(*text_config, key.c_str());
        }
        if (id) set_special_id(special, kind, *id, n_tokens, path);
    }
}

std::optional<json> read_optional_json(const std::string& dir, const char* name) {
    const std::string path = path_in(dir, name);
    if (!fs::is_regular_file(path)) return std::nullopt;
    return read_hf_json_file(path);
}

// Which tokenizer.json this is: byte-level BPE (the pre-tokenizer name to record) or something else (nullopt,
// with the reason).
std::optional<std::string_view> byte_level_pre(const json& tokenizer, std::string& reason) {
    const json* model = member(tokenizer, "model");
    const json* pre = member(tokenizer, "pre_tokenizer");
    const json* normalizer = member(tokenizer, "normalizer");
    if (!model || member(*model, "type") == nullptr || (*model)["type"] != "BPE") {
        reason = "its model is not BPE";
    } else if (const json* fallback = member(*model, "byte_fallback"); fallback && *fallback == true) {
        reason = "its BPE model uses byte fallback (a SentencePiece-style BPE)";
    } else if (!pre || member(*pre, "type") == nullptr || (*pre)["type"] != "ByteLevel") {
        reason = "its pre-tokenizer is not a single ByteLevel";
    } else if (const json* prefix = member(*pre, "add_prefix_space"); prefix && *prefix == true) {
        reason = "its ByteLevel pre-tokenizer adds a prefix space";
    } else if (const json* regex = member(*pre, "use_regex"); regex && *regex == false) {
        reason = "its ByteLevel pre-tokenizer does not split with the GPT-2 pattern";
    } else if (!normalizer) {
        return kBpePreGpt2;
    } else if (member(*normalizer, "type") != nullptr && (*normalizer)["type"] == "NFC") {
        return kBpePreGptNeox;
    } else {
        reason = concat("its normalizer ", normalizer->dump(), " is not supported (only none or NFC)");
    }
    return std::nullopt;
}

void write_vocab(GgufWriter& writer, std::string_view model, std::string_view pre, Vocab vocab) {
    writer.set(vocab_key::kModel, GgufValue::string(std::string(model)));
    writer.set(vocab_key::kPre, GgufValue::string(std::string(pre)));
    writer.set(vocab_key::kTokens, GgufValue::string_array(std::move(vocab.tokens)));
    if (!vocab.scores.empty()) writer.set(vocab_key::kScores, GgufValue::f32_array(vocab.scores));
    writer.set(vocab_key::kTokenType, GgufValue::i32_array(vocab.types));
}

void write_special(GgufWriter& writer, const SpecialTokens& special) {
    const std::pair<const char*, const char*> keys[] = {{"bos", vocab_key::kBosId},
                                                        {"eos", vocab_key::kEosId},
                                                        {"unk", vocab_key::kUnknownId},
                                                        {"pad", vocab_key::kPaddingId}};
    for (const auto& [kind, key] : keys) {
        if (const auto found = special.ids.find(kind); found != special.ids.end()) {
            writer.set(key, GgufValue::u32(static_cast<uint32_t>(found->second)));
        }
    }
    if (special.add_bos) writer.set(vocab_key::kAddBos, GgufValue::boolean(*special.add_bos));
    if (special.add_eos) writer.set(vocab_key::kAddEos, GgufValue::boolean(*special.add_eos));
}

// An added_tokens_decoder key: a token id in decimal digits, nothing else.
std::optional<uint64_t> parse_decimal_id(std::string_view key) {
    uint64_t id = 0;
    const auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (error != std::errc() || end != key.data() + key.size()) return std::nullopt;
    return id;
}

void check_fits(int64_t n_tokens, int64_t n_vocab_padded, const std::string& source) {
    if (n_tokens > n_vocab_padded) {
        fail(source, ": the tokenizer has ", n_tokens, " tokens but the model's vocabulary has only ", n_vocab_padded,
             " rows");
    }
}

void add_bpe_tokenizer(const std::string& dir, const json& tokenizer, std::string_view pre, int64_t n_vocab_padded,
                       GgufWriter& writer, const std::function<void(const std::string&)>& warn) {
    const std::string source = path_in(dir, kTokenizerJson);
    const json& model = tokenizer["model"];
    const json* vocab_json = member(model, "vocab");
    if (!vocab_json || !vocab_json->is_object()) fail(source, ": model.vocab is missing or not an object");

    // Ids are checked against the model's rows as they are read, so no arithmetic is done on a hostile one.
    std::map<int64_t, std::pair<std::string, TokenType>> by_id;
    const auto checked_id = [&](const std::string& text, const json& id) {
        const std::optional<uint64_t> value = json_unsigned(id);
        if (!value) fail(source, ": token '", text, "' has no valid id (", id.dump(), ")");
        if (!is_index_below(*value, n_vocab_padded)) {
            fail(source, ": token '", text, "' has id ", *value, " but the model's vocabulary has only ",
                 n_vocab_padded, " rows");
        }
        return static_cast<int64_t>(*value);
    };
    for (const auto& [text, id] : vocab_json->items()) {
        const auto [existing, added] = by_id.try_emplace(checked_id(text, id), text, TokenType::Normal);
        if (!added) fail(source, ": tokens '", existing->second.first, "' and '", text, "' both have id ", id.dump());
    }
    const json* added = member(tokenizer, "added_tokens");
    if (added && !added->is_array()) fail(source, ": added_tokens is not a list");
    if (added) {
        for (const json& token : *added) {
            const json* content = member(token, "content");
            const json* id = member(token, "id");
            if (!content || !content->is_string() || !id) fail(source, ": an added token lacks content or id");
            const json* is_special = member(token, "special");
            const std::string text = content->get<std::string>();
            const bool control = (is_special && *is_special == true) || looks_special(text);
            const std::optional<uint64_t> past = json_unsigned(*id);
            if (past && !is_index_below(*past, n_vocab_padded)) {
                if (warn) {
                    warn(concat(source, ": added token '", text, "' (id ", *past, ") lies past the model's ",
                                n_vocab_padded, " embedding rows; dropped"));
                }
                continue;
            }
            // An added token may restate a vocabulary id (with its raw text): it takes that id over.
            by_id[checked_id(text, *id)] = {text, control ? TokenType::Control : TokenType::UserDefined};
        }
    }
    if (by_id.empty()) fail(source, ": the vocabulary is empty");

    Vocab vocab;
    vocab.tokens.reserve(static_cast<size_t>(n_vocab_padded));
    for (int64_t id = 0; id < n_vocab_padded; ++id) {
        const auto found = by_id.find(id);
        vocab.tokens.push_back(found == by_id.end() ? padding_token(id) : found->second.first);
        vocab.types.push_back(static_cast<int32_t>(found == by_id.end() ? TokenType::Unused : found->second.second));
    }

    const json* merges_json = member(model, "merges");
    if (!merges_json || !merges_json->is_array()) fail(source, ": model.merges is missing or not a list");
    std::vector<std::string> merges;
    merges.reserve(merges_json->size());
    const auto encode_spaces = [](std::string part) {
        for (size_t at = part.find(' '); at != std::string::npos; at = part.find(' ', at + kEncodedSpace.size())) {
            part.replace(at, 1, kEncodedSpace);
        }
        return part;
    };
    for (const json& merge : *merges_json) {
        if (merge.is_string()) {
            merges.push_back(merge.get<std::string>());
        } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
            merges.push_back(encode_spaces(merge[0].get<std::string>()) + " " +
                             encode_spaces(merge[1].get<std::string>()));
        } else {
            fail(source, ": model.merges[", merges.size(), "] is neither \"a b\" nor [\"a\", \"b\"]");
        }
    }

    SpecialTokens special;
    read_post_processor(tokenizer, special);
    if (const std::optional<json> config = read_optional_json(dir, kTokenizerConfigJson)) {
        read_tokenizer_config(*config, added, n_vocab_padded, path_in(dir, kTokenizerConfigJson), special);
    }
    read_model_config_ids(dir, kConfigJson, n_vocab_padded, special);
    read_model_config_ids(dir, kGenerationConfigJson, n_vocab_padded, special);

    write_vocab(writer, kBpeModelName, pre, std::move(vocab));
    writer.set(vocab_key::kMerges, GgufValue::string_array(std::move(merges)));
    write_special(writer, special);
}

std::string read_binary_file(const std::string& path) { return read_whole_file(path); }

void add_spm_tokenizer(const std::string& dir, const std::string& model_path, int64_t n_vocab_padded,
                       GgufWriter& writer) {
    const std::string serialized = read_binary_file(model_path);
    const SpmModel model = parse_spm_model(serialized, model_path);
    check_spm_model_loads(serialized, model_path);
    const auto n_pieces = static_cast<int64_t>(model.pieces.size());
    check_fits(n_pieces, n_vocab_padded, model_path);

    Vocab vocab;
    for (const SpmPiece& piece : model.pieces) {
        vocab.tokens.push_back(piece.piece);
        vocab.scores.push_back(piece.score);
        vocab.types.push_back(static_cast<int32_t>(piece.type));
    }
    for (int64_t id = n_pieces; id < n_vocab_padded; ++id) {
        vocab.tokens.push_back(padding_token(id));
        vocab.scores.push_back(kPaddingScore);
        vocab.types.push_back(static_cast<int32_t>(TokenType::Unused));
    }

    // Added tokens the HF tokenizer declares: their types, and the tokens past the model's own pieces.
    const std::string config_path = path_in(dir, kTokenizerConfigJson);
    const std::optional<json> config = read_optional_json(dir, kTokenizerConfigJson);
    if (config) {
        if (const json* decoder = member(*config, "added_tokens_decoder"); decoder && decoder->is_object()) {
            for (const auto& [key, entry] : decoder->items()) {
                const json* content = member(entry, "content");
                const std::optional<uint64_t> parsed = parse_decimal_id(key);
                if (!parsed || !content || !content->is_string()) {
                    fail(config_path, ": added_tokens_decoder entry '", key, "' is not an id with a content");
                }
                if (!is_index_below(*parsed, n_vocab_padded)) {
                    fail(config_path, ": added_tokens_decoder entry '", key, "' lies past the model's ",
                         n_vocab_padded, " vocabulary rows");
                }
                const auto id = static_cast<int64_t>(*parsed);
                const std::string text = content->get<std::string>();
                const json* is_special = member(entry, "special");
                const bool control = (is_special && *is_special == true) || looks_special(text);
                const auto at = static_cast<size_t>(id);
                vocab.types[at] = static_cast<int32_t>(control ? TokenType::Control : TokenType::UserDefined);
                // A piece of the model keeps its text: the stored model must agree with the token list.
                if (id >= n_pieces) {
                    vocab.tokens[at] = text;
                    vocab.scores[at] = kAddedTokenScore;
                }
            }
        }
    }

    SpecialTokens special;
    if (config) read_tokenizer_config(*config, nullptr, n_vocab_padded, config_path, special);
    read_model_config_ids(dir, kConfigJson, n_vocab_padded, special);
    read_model_config_ids(dir, kGenerationConfigJson, n_vocab_padded, special);
    const std::pair<const char*, int32_t> model_ids[] = {
        {"bos", model.bos_id}, {"eos", model.eos_id}, {"unk", model.unk_id}, {"pad", model.pad_id}};
    for (const auto& [kind, id] : model_ids) {
        if (id >= 0 && id < n_pieces) special.ids.try_emplace(kind, id);
    }

    write_vocab(writer, kSpmModelName, kSpmPre, std::move(vocab));
    write_special(writer, special);
    writer.set(vocab_key::kAddSpacePrefix, GgufValue::boolean(model.add_dummy_prefix));
    writer.set(vocab_key::kRemoveExtraWhitespaces, GgufValue::boolean(model.remove_extra_whitespaces));
    std::vector<uint64_t> proto_bytes(serialized.size());
    for (size_t i = 0; i < serialized.size(); ++i) proto_bytes[i] = static_cast<unsigned char>(serialized[i]);
    writer.set(kSpmModelKey, GgufValue::array(GgufType::UINT8, std::move(proto_bytes)));
}

}  // namespace

void add_hf_tokenizer(const std::string& tokenizer_dir, int64_t n_vocab_padded, GgufWriter& writer,
                      const std::function<void(const std::string&)>& warn) {
    if (n_vocab_padded <= 0) fail("tokenizer: the model's vocabulary size ", n_vocab_padded, " is not positive");
    if (!fs::is_directory(tokenizer_dir)) fail(tokenizer_dir, ": not a directory");

    std::string not_byte_level;
    const std::string json_path = path_in(tokenizer_dir, kTokenizerJson);
    if (fs::is_regular_file(json_path)) {
        const json tokenizer = read_hf_json_file(json_path);
        if (const std::optional<std::string_view> pre = byte_level_pre(tokenizer, not_byte_level)) {
            add_bpe_tokenizer(tokenizer_dir, tokenizer, *pre, n_vocab_padded, writer, warn);
            return;
        }
    }
    for (const char* name : kSpmFileNames) {
        const std::string model_path = path_in(tokenizer_dir, name);
        if (fs::is_regular_file(model_path)) {
            add_spm_tokenizer(tokenizer_dir, model_path, n_vocab_padded, writer);
            return;
        }
    }
    if (!not_byte_level.empty()) {
        fail(json_path, ": not a byte-level BPE tokenizer (", not_byte_level,
             ") and there is no SentencePiece tokenizer.model next to it");
    }
    fail(tokenizer_dir, ": no tokenizer found (expected tokenizer.json or tokenizer.model)");
}

}  // namespace dendro
