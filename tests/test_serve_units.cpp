// The server's library pieces without HTTP: stop strings, request validation, chat formats, the RAM tier of
// the prefix cache and the metrics text.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cache/prefix_cache.h"
#include "common/error.h"
#include "serve/api_error.h"
#include "serve/chat_format.h"
#include "serve/metrics.h"
#include "serve/ram_prefix_tier.h"
#include "serve/request.h"
#include "serve/stop_strings.h"
#include "state_snapshot_fixture.h"
#include "temp_dir.h"
#include "tokenizer_gguf.h"

namespace dendro::serve {
namespace {

using nlohmann::json;

TEST(StopStringFilter, HoldsBackWhatMayStartAStopAndCutsAtTheFirst) {
    StopStringFilter filter({"END", "\n\n"});
    EXPECT_EQ(filter.push("abc E"), "abc ");  // "E" may start END
    EXPECT_EQ(filter.push("N"), "");
    EXPECT_EQ(filter.push("X\n"), "ENX");  // not END after all; "\n" may start "\n\n"
    EXPECT_FALSE(filter.stopped());
    EXPECT_EQ(filter.push("\nmore"), "");
    EXPECT_TRUE(filter.stopped());
    EXPECT_EQ(filter.push("later"), "");
    EXPECT_EQ(filter.flush(), "");
}

TEST(StopStringFilter, FlushReleasesAHeldTailAndNoStopsPassesEverything) {
    StopStringFilter filter({"END"});
    EXPECT_EQ(filter.push("the EN"), "the ");
    EXPECT_EQ(filter.flush(), "EN");
    StopStringFilter none({});
    EXPECT_EQ(none.push("anything"), "anything");
}

GenerationRequest parse(Endpoint endpoint, const json& body) {
    return parse_generation_request(endpoint, body, RequestLimits{});
}

std::string error_param(Endpoint endpoint, const json& body) {
    try {
        parse(endpoint, body);
    } catch (const ApiError& e) {
        EXPECT_EQ(e.status(), kHttpBadRequest);
        return e.body()["error"]["param"].is_string() ? e.body()["error"]["param"].get<std::string>() : "";
    }
    ADD_FAILURE() << "accepted: " << body.dump();
    return "";
}

TEST(Request, OpenAiDefaultsAndValuesParse) {
    const GenerationRequest r = parse(Endpoint::Completions, {{"prompt", "hi"}});
    EXPECT_EQ(r.sampling.temperature, 1.0f);
    EXPECT_EQ(r.sampling.top_p, 1.0f);
    EXPECT_EQ(r.sampling.top_k, 0);
    EXPECT_EQ(r.sampling.min_p, 0.0f);
    EXPECT_EQ(r.max_tokens, RequestLimits{}.default_max_tokens);
    EXPECT_EQ(r.top_logprobs, -1);
    EXPECT_FALSE(r.seed_given);

    const GenerationRequest c =
        parse(Endpoint::ChatCompletions,
              {{"messages", json::array({{{"role", "user"},
                                          {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                                   {{"type", "text"}, {"text", "b"}}})}}})},
               {"max_completion_tokens", 5},
               {"stop", "x"},
               {"seed", 9},
               {"logprobs", true},
               {"top_k", 3}});
    ASSERT_EQ(c.messages.size(), 1u);
    EXPECT_EQ(c.messages[0].content, "ab");
    EXPECT_EQ(c.max_tokens, 5);
    EXPECT_EQ(c.stop, std::vector<std::string>{"x"});
    EXPECT_TRUE(c.seed_given);
    EXPECT_EQ(c.sampling.seed, 9u);
    EXPECT_EQ(c.top_logprobs, 0);
    EXPECT_EQ(c.sampling.top_k, 3);
}

TEST(Request, BadValuesNameTheirField) {
    EXPECT_EQ(error_param(Endpoint::Completions, {{"prompt", "a"}, {"top_logprobs", 1}}), "top_logprobs");  // chat only
    EXPECT_EQ(error_param(Endpoint::ChatCompletions, {{"prompt", "a"}}), "prompt");
    EXPECT_EQ(error_param(Endpoint::Completions, {{"prompt", "a"}, {"stop", json::array({"a", "b", "c", "d", "e"})}}),
              "stop");
    EXPECT_EQ(error_param(Endpoint::Completions, {{"prompt", "a"}, {"stop", ""}}), "stop");
    EXPECT_EQ(error_param(Endpoint::Completions, {{"prompt", "a"}, {"max_tokens", 1.5}}), "max_tokens");
    EXPECT_EQ(error_param(Endpoint::Completions, {{"prompt", "a"}, {"seed", 18446744073709551615ull}}), "seed");
    EXPECT_EQ(error_param(Endpoint::Completions, {{"prompt", "a"}, {"stream_options", {{"include_usage", true}}}}),
              "stream_options");
    EXPECT_EQ(error_param(Endpoint::ChatCompletions,
                          {{"messages", json::array({{{"role", "user"}, {"content", "x"}, {"tool_calls", 1}}})}}),
              "messages[0]");
    EXPECT_THROW(parse_json_body("{\"a\": "), ApiError);
    EXPECT_THROW(parse_json_body("3"), ApiError);
}

TEST(ChatFormat, PlainConcatenatesAndMistralV3WrapsTurns) {
    const std::vector<ChatMessage> messages = {
        {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}};
    EXPECT_EQ(render_chat(ChatFormat::Plain, messages), "Be brief.\nHi\nHello\nBye\n");
    EXPECT_EQ(render_chat(ChatFormat::MistralV3, messages), "[INST] Be brief.\n\nHi[/INST] Hello</s>[INST] Bye[/INST]");
    EXPECT_EQ(parse_chat_format("auto"), std::nullopt);
    EXPECT_EQ(parse_chat_format("mistral-v3"), ChatFormat::MistralV3);
    EXPECT_THROW(parse_chat_format("chatml"), dendro::Error);
}

TEST(ChatFormat, DetectedFromTheVocabularyWithMessageEndsAsCheckpoints) {
    const test::TempDir dir;
    test::write_vocab_gguf(dir.file("mistral.gguf"), test::tokenizer_dir(test::kMistralTokenizer), test::kMistralVocab);
    test::write_vocab_gguf(dir.file("neox.gguf"), test::tokenizer_dir(test::kNeoxTokenizer), test::kNeoxPaddedVocab);
    const test::LoadedTokenizer mistral = test::load_tokenizer(dir.file("mistral.gguf"));
    const test::LoadedTokenizer neox = test::load_tokenizer(dir.file("neox.gguf"));
    EXPECT_EQ(detect_chat_format(*mistral.tokenizer), ChatFormat::MistralV3);
    EXPECT_EQ(detect_chat_format(*neox.tokenizer), ChatFormat::Plain);

    const std::vector<ChatMessage> first = {{"user", "Hi"}, {"assistant", "Hello"}};
    std::vector<ChatMessage> second = first;
    second.push_back({"user", "Bye"});
    const ChatPrompt a = chat_prompt(ChatFormat::MistralV3, first, *mistral.tokenizer);
    const ChatPrompt b = chat_prompt(ChatFormat::MistralV3, second, *mistral.tokenizer);
    ASSERT_EQ(b.message_ends.size(), 3u);
    EXPECT_EQ(b.message_ends.back(), static_cast<int64_t>(b.tokens.size()));
    // The earlier turns are a prefix of the later prompt, ending where its second message ends.
    EXPECT_EQ(b.message_ends[1], static_cast<int64_t>(a.tokens.size()));
    EXPECT_TRUE(std::equal(a.tokens.begin(), a.tokens.end(), b.tokens.begin()));
}

TEST(RamPrefixTier, LongestPrefixLruEvictionAndDiskFallback) {
    const ModelHparams hp = test::tiny_state_hparams();
    const std::vector<int32_t> tokens = test::random_tokens(40, hp.n_vocab, 1);
    const auto prefix = [&](size_t n) { return std::vector<int32_t>(tokens.begin(), tokens.begin() + n); };
    const StateSnapshot s10 = test::random_snapshot(hp, prefix(10), 1);
    const StateSnapshot s20 = test::random_snapshot(hp, prefix(20), 1);
    const StateSnapshot s30 = test::random_snapshot(hp, prefix(30), 1);
    const uint64_t one = s10.state.bytes() + 30 * sizeof(int32_t) + s10.last_logits.size() * sizeof(float);

    // Room for two snapshots: the third store evicts the least recently used.
    RamPrefixTier tier(ModelFingerprint{1, 2}, 2 * one, nullptr, {});
    EXPECT_FALSE(tier.longest_prefix(tokens));
    EXPECT_NE(tier.last_lookup().find("empty"), std::string::npos);
    EXPECT_TRUE(tier.store(s10, true));
    EXPECT_TRUE(tier.store(s20, true));
    EXPECT_FALSE(tier.store(s20, true));  // held already
    auto hit = tier.longest_prefix(tokens);
    ASSERT_TRUE(hit);
    EXPECT_TRUE(test::same_bits(*hit, s20));
    EXPECT_TRUE(tier.longest_prefix(prefix(15)));  // s10 is now the most recently used
    tier.store(s30, true);                         // evicts s20
    EXPECT_EQ(tier.ram_entries(), 2u);
    hit = tier.longest_prefix(prefix(25));
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->n_tokens(), 10);
    // A prompt that diverges before any entry ends is a miss that says how far it matched.
    std::vector<int32_t> other = prefix(25);
    other[5] = (other[5] + 1) % static_cast<int32_t>(hp.n_vocab);
    EXPECT_FALSE(tier.longest_prefix(other));
    EXPECT_NE(tier.last_lookup().find("shares 5 tokens"), std::string::npos) << tier.last_lookup();

    // With a disk tier: a store lands on disk, and a fresh RAM tier (another replica) finds it there.
    const test::TempDir dir;
    const auto disk = [&] {
        return std::make_unique<PrefixCache>(CacheDirectory::open(dir.path(), true), ModelFingerprint{1, 2}, hp,
                                             uint64_t{1} << 30, WarningSink{});
    };
    RamPrefixTier writer(ModelFingerprint{1, 2}, 2 * one, disk(), {});
    EXPECT_TRUE(writer.store(s20, true));
    writer.flush();
    RamPrefixTier reader(ModelFingerprint{1, 2}, 2 * one, disk(), {});
    hit = reader.longest_prefix(tokens);
    ASSERT_TRUE(hit);
    EXPECT_TRUE(test::same_bits(*hit, s20));
    EXPECT_NE(reader.last_lookup().find("disk hit"), std::string::npos);
    EXPECT_EQ(reader.ram_entries(), 1u);  // copied into RAM
}

TEST(Metrics, PrometheusTextHasCountersGaugesAndCumulativeBuckets) {
    ServeMetrics m;
    m.requests = 3;
    m.queue_depth = 2;
    m.time_to_first_token.observe(0.02);
    m.time_to_first_token.observe(100.0);
    const std::string text = m.render();
    EXPECT_NE(text.find("# TYPE dendro_requests_total counter\ndendro_requests_total 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE dendro_queue_depth gauge\ndendro_queue_depth 2\n"), std::string::npos);
    EXPECT_NE(text.find("dendro_time_to_first_token_seconds_bucket{le=\"0.01\"} 0\n"), std::string::npos);
    EXPECT_NE(text.find("dendro_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("dendro_time_to_first_token_seconds_bucket{le=\"30\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("dendro_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("dendro_time_to_first_token_seconds_count 2\n"), std::string::npos);
}

}  // namespace
}  // namespace dendro::serve
