// dendro serve end to end: a server on a free loopback port with the bundled model, driven by curl (and by
// the openai Python package in tests/serve/openai_client.py).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "raw_connection.h"
#include "run_command.h"
#include "server_process.h"
#include "temp_dir.h"

namespace dendro::test {
namespace {

using nlohmann::json;

// What `dendro run --temp 0` generates after `prompt` (its stdout is the prompt, the text, a newline).
std::string sequential_run(const std::string& prompt, int n_tokens) {
    const CommandResult r =
        run_command(std::string(DENDRO_EXE) + " run -t 1 --temp 0 -m " + shell_quote(bundled_model_path()) + " -n " +
                    std::to_string(n_tokens) + " -p " + shell_quote(prompt));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, prompt.size()), prompt);
    EXPECT_GE(r.out.size(), prompt.size() + 1);
    return r.out.substr(prompt.size(), r.out.size() - prompt.size() - 1);
}

// The body of a request, as text (curl sends it).
std::string body(const json& j) { return j.dump(); }

// Reads a metric's value from /metrics.
double metric(const ServerProcess& server, const std::string& name) {
    const HttpReply r = http_request(server, "GET", "/metrics");
    const std::regex line("\n" + name + " ([0-9.e+-]+)\n");
    std::smatch m;
    if (!std::regex_search(r.body, m, line)) {
        ADD_FAILURE() << "no metric " << name << " in:\n" << r.body;
        return -1;
    }
    return std::stod(m[1]);
}

TEST(Serve, CompletionsMatchTheCommandLineStreamedOrNot) {
    ServerProcess server({"--parallel", "2"});
    ASSERT_GT(server.port(), 0);
    const std::string prompt = "ROMEO:\nWhat light";
    const std::string expected = sequential_run(prompt, 24);

    const HttpReply whole = http_request(server, "POST", "/v1/completions",
                                         body({{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}}));
    ASSERT_EQ(whole.status, 200) << whole.body;
    const json j = whole.json();
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["choices"][0]["text"], expected);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], 24);
    EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
    EXPECT_TRUE(j["usage"]["prompt_tokens_details"].contains("cached_tokens"));

    const HttpReply streamed = http_request(server, "POST", "/v1/completions",
                                            body({{"prompt", prompt},
                                                  {"max_tokens", 24},
                                                  {"temperature", 0},
                                                  {"stream", true},
                                                  {"stream_options", {{"include_usage", true}}}}),
                                            "-N");
    ASSERT_EQ(streamed.status, 200) << streamed.body;
    EXPECT_NE(streamed.headers.find("text/event-stream"), std::string::npos);
    EXPECT_EQ(stream_text(streamed.body), expected);
    const std::vector<std::string> payloads = sse_payloads(streamed.body);
    ASSERT_GE(payloads.size(), 3u);
    EXPECT_EQ(payloads.back(), "[DONE]");
    const json usage = json::parse(payloads[payloads.size() - 2]);
    EXPECT_EQ(usage["usage"]["completion_tokens"], 24);
    // The identical prompt comes from the cache, logits included: every prompt token cached.
    EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], usage["usage"]["prompt_tokens"]);
}

TEST(Serve, ChatCompletionsStreamedOrNotAgreeAndCarryLogprobs) {
    ServerProcess server({"--chat-format", "plain"});
    ASSERT_GT(server.port(), 0);
    const json messages = json::array({{{"role", "user"}, {"content", "KING RICHARD III:"}}});
    // Plain chat format: the contents, each followed by a newline.
    const std::string expected = sequential_run("KING RICHARD III:\n", 12);

    const HttpReply whole = http_request(
        server, "POST", "/v1/chat/completions",
        body(
            {{"messages", messages}, {"max_tokens", 12}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 3}}));
    ASSERT_EQ(whole.status, 200) << whole.body;
    const json j = whole.json();
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    EXPECT_EQ(j["choices"][0]["message"]["content"], expected);
    const json& content = j["choices"][0]["logprobs"]["content"];
    ASSERT_EQ(content.size(), 12u);
    for (const json& t : content) {
        ASSERT_EQ(t["top_logprobs"].size(), 3u);
        // Greedy: the chosen token is the most likely one.
        EXPECT_EQ(t["logprob"], t["top_logprobs"][0]["logprob"]);
        EXPECT_LE(t["logprob"].get<double>(), 0.0);
    }

    const HttpReply streamed =
        http_request(server, "POST", "/v1/chat/completions",
                     body({{"messages", messages}, {"max_tokens", 12}, {"temperature", 0}, {"stream", true}}), "-N");
    ASSERT_EQ(streamed.status, 200);
    EXPECT_EQ(stream_text(streamed.body), expected);
    const std::vector<std::string> payloads = sse_payloads(streamed.body);
    ASSERT_GE(payloads.size(), 3u);
    EXPECT_EQ(json::parse(payloads[0])["choices"][0]["delta"]["role"], "assistant");
    EXPECT_EQ(json::parse(payloads[payloads.size() - 2])["choices"][0]["finish_reason"], "length");

    const HttpReply models = http_request(server, "GET", "/v1/models");
    ASSERT_EQ(models.status, 200);
    EXPECT_EQ(models.json()["data"][0]["id"], "dendro-shakespeare-2m");
    EXPECT_EQ(http_request(server, "GET", "/health").json()["status"], "ok");
}

TEST(Serve, StopStringsEndTheTextBeforeThem) {
    ServerProcess server({});
    ASSERT_GT(server.port(), 0);
    const std::string prompt = "ROMEO:\nWhat light";
    const std::string full = sequential_run(prompt, 24);
    const size_t newline = full.find('\n', 1);
    ASSERT_NE(newline, std::string::npos) << full;
    for (bool stream : {false, true}) {
        const HttpReply r = http_request(server, "POST", "/v1/completions",
                                         body({{"prompt", prompt},
                                               {"max_tokens", 24},
                                               {"temperature", 0},
                                               {"stop", json::array({"\n"})},
                                               {"stream", stream}}));
        ASSERT_EQ(r.status, 200) << r.body;
        const std::string text = stream ? stream_text(r.body) : r.json()["choices"][0]["text"].get<std::string>();
        // The text up to the first newline (a leading one is the stop itself).
        EXPECT_EQ(text, full.substr(0, full.find('\n')));
    }
}

TEST(Serve, SixteenConcurrentGreedyStreamsEqualSequentialRuns) {
    constexpr int kClients = 16;
    constexpr int kTokens = 20;
    ServerProcess server({"--parallel", std::to_string(kClients), "--prefill-chunk", "4"});
    ASSERT_GT(server.port(), 0);
    const std::vector<std::string> speakers = {"ROMEO",          "JULIET",     "KING HENRY",     "GLOUCESTER",
                                               "MERCUTIO",       "NURSE",      "FRIAR LAURENCE", "BENVOLIO",
                                               "TYBALT",         "CAPULET",    "PARIS",          "LADY CAPULET",
                                               "QUEEN MARGARET", "BUCKINGHAM", "HASTINGS",       "CLARENCE"};
    const TempDir dir;
    std::string command;
    std::vector<std::string> prompts;
    for (int i = 0; i < kClients; ++i) {
        // Prompts of different lengths, so that prefills and decodes of different slots interleave.
        std::string prompt = speakers[i] + ":\n";
        for (int k = 0; k < i % 5; ++k) prompt += "O, ";
        prompts.push_back(prompt);
        const std::string request = body({{"prompt", prompt},
                                          {"max_tokens", kTokens},
                                          {"temperature", 0},
                                          {"stream", true},
                                          {"stream_options", {{"include_usage", true}}}});
        const std::string request_path = dir.file("request" + std::to_string(i));
        std::ofstream(request_path) << request;
        command += "curl -sS -N --max-time 120 -H 'Content-Type: application/json' --data-binary @" +
                   shell_quote(request_path) + " " + shell_quote(server.url("/v1/completions")) + " > " +
                   shell_quote(dir.file("out" + std::to_string(i))) + " & ";
    }
    command += "wait";
    ASSERT_EQ(run_command(command).exit_code, 0);

    for (int i = 0; i < kClients; ++i) {
        std::ifstream in(dir.file("out" + std::to_string(i)));
        const std::string stream((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        EXPECT_EQ(stream_text(stream), sequential_run(prompts[i], kTokens)) << "client " << i << ": " << prompts[i];
        const std::vector<std::string> payloads = sse_payloads(stream);
        ASSERT_GE(payloads.size(), 2u);
        EXPECT_EQ(json::parse(payloads[payloads.size() - 2])["usage"]["completion_tokens"], kTokens);
    }
    // They ran together: the histogram of decode batches is not observable, but the slots were all in use.
    EXPECT_EQ(metric(server, "dendro_requests_finished_total"), kClients);
    EXPECT_EQ(metric(server, "dendro_active_sequences"), 0);
}

// The second turn of a conversation resumes from the state after the first turn's reply, and gives the
// same tokens as a server without any cache.
TEST(Serve, SecondTurnReportsCachedTokensAndMatchesAnUncachedServer) {
    const json first_turn =
        json::array({{{"role", "system"}, {"content", "A play."}}, {{"role", "user"}, {"content", "ROMEO:"}}});
    ServerProcess cached({"--chat-format", "plain", "--cache-every", "0"});  // checkpoints only at message ends
    ServerProcess uncached({"--chat-format", "plain", "--cache-ram", "0"});
    ASSERT_GT(cached.port(), 0);
    ASSERT_GT(uncached.port(), 0);

    const auto chat = [&](const ServerProcess& server, const json& messages) {
        const HttpReply r = http_request(server, "POST", "/v1/chat/completions",
                                         body({{"messages", messages}, {"max_tokens", 16}, {"temperature", 0}}));
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json();
    };
    const json turn1 = chat(cached, first_turn);
    EXPECT_EQ(turn1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    json second_turn = first_turn;
    second_turn.push_back({{"role", "assistant"}, {"content", turn1["choices"][0]["message"]["content"]}});
    second_turn.push_back({{"role", "user"}, {"content", "JULIET:"}});
    const json turn2 = chat(cached, second_turn);
    const int turn1_prompt = turn1["usage"]["prompt_tokens"];
    EXPECT_GE(turn2["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), turn1_prompt);
    EXPECT_LT(turn2["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(),
              turn2["usage"]["prompt_tokens"].get<int>());
    EXPECT_NE(cached.log().find("prefix cache miss: the RAM tier is empty"), std::string::npos) << cached.log();

    const json reference = chat(uncached, second_turn);
    EXPECT_EQ(reference["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    EXPECT_EQ(turn2["choices"][0]["message"]["content"], reference["choices"][0]["message"]["content"]);

    // Another conversation with the same system message resumes at that message's end (a checkpoint): in the
    // plain format, its content and a newline, after the BOS the vocabulary adds.
    const json other =
        chat(cached,
             json::array({{{"role", "system"}, {"content", "A play."}}, {{"role", "user"}, {"content", "HAMLET:"}}}));
    const json system_only = chat(uncached, json::array({{{"role", "user"}, {"content", "A play."}}}));
    EXPECT_EQ(other["usage"]["prompt_tokens_details"]["cached_tokens"], system_only["usage"]["prompt_tokens"]);

    // A prompt that diverges from everything stored inside its first checkpoint: the log says why it missed.
    chat(cached, json::array({{{"role", "user"}, {"content", "Z"}}}));
    EXPECT_NE(cached.log().find("no RAM entry is a prefix"), std::string::npos) << cached.log();
}

TEST(Serve, DisconnectMidStreamFreesTheSlot) {
    ServerProcess server({"--parallel", "1", "--max-tokens", "1000000"});
    ASSERT_GT(server.port(), 0);
    // curl gives up after a second, long before a million tokens.
    const HttpReply gone =
        http_request(server, "POST", "/v1/completions",
                     body({{"prompt", "ROMEO:"}, {"max_tokens", 1000000}, {"stream", true}, {"temperature", 1.0}}),
                     "-N --max-time 1");
    EXPECT_EQ(gone.status, 200);
    // With the only slot still taken this would wait for the request timeout.
    const HttpReply next =
        http_request(server, "POST", "/v1/completions",
                     body({{"prompt", "JULIET:"}, {"max_tokens", 4}, {"temperature", 0}}), "--max-time 30");
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.json()["usage"]["completion_tokens"], 4);
    EXPECT_EQ(metric(server, "dendro_requests_cancelled_total"), 1);
    EXPECT_EQ(metric(server, "dendro_active_sequences"), 0);
    EXPECT_NE(server.log().find("cmpl-1: cancelled after"), std::string::npos) << server.log();
}

// A non-streaming response writes nothing before the end; the server sees the client's closed socket.
TEST(Serve, DisconnectDuringANonStreamingRequestFreesTheSlot) {
    ServerProcess server({"--parallel", "1", "--max-tokens", "1000000", "--timeout", "120"});
    ASSERT_GT(server.port(), 0);
    const auto start = std::chrono::steady_clock::now();
    const HttpReply gone = http_request(server, "POST", "/v1/completions",
                                        body({{"prompt", "ROMEO:"}, {"max_tokens", 1000000}, {"temperature", 1.0}}),
                                        "--max-time 1");
    EXPECT_EQ(gone.status, 0);  // curl gave up: no response
    // Unnoticed, the request would hold the only slot for its 120 s timeout.
    const HttpReply next =
        http_request(server, "POST", "/v1/completions",
                     body({{"prompt", "JULIET:"}, {"max_tokens", 4}, {"temperature", 0}}), "--max-time 20");
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.json()["usage"]["completion_tokens"], 4);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
    EXPECT_EQ(metric(server, "dendro_requests_cancelled_total"), 1);
    EXPECT_EQ(metric(server, "dendro_active_sequences"), 0);
    EXPECT_NE(server.log().find("cmpl-1: cancelled after"), std::string::npos) << server.log();
}

// Clients that stall while sending, or never read, hold an HTTP thread until --read-timeout, never a slot,
// and delay nobody; one whose body stopped short gets 408.
TEST(Serve, StalledClientsAreClosedAfterTheReadTimeoutAndBlockNobody) {
    constexpr int kReadTimeout = 4;
    ServerProcess server({"--parallel", "1", "--read-timeout", std::to_string(kReadTimeout), "--max-tokens", "1000000"});
    ASSERT_GT(server.port(), 0);
    RawConnection stalled_body(server.port());
    ASSERT_TRUE(stalled_body.send("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                  "Content-Length: 100\r\n\r\n{\"prompt\": \"RO"));
    RawConnection stalled_headers(server.port());
    ASSERT_TRUE(stalled_headers.send("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"));

    const HttpReply next = http_request(server, "POST", "/v1/completions",
                                        body({{"prompt", "JULIET:"}, {"max_tokens", 4}, {"temperature", 0}}));
    ASSERT_EQ(next.status, 200) << next.body;
    // It was answered while both stalled clients were still waiting on their timeout.
    EXPECT_FALSE(stalled_body.has_news());
    EXPECT_FALSE(stalled_headers.has_news());
    EXPECT_EQ(metric(server, "dendro_active_sequences"), 0);

    const auto limit = std::chrono::seconds(3 * kReadTimeout);
    const std::string body_reply = stalled_body.read_until_closed(limit);
    EXPECT_TRUE(stalled_body.closed_by_server());
    EXPECT_EQ(body_reply.rfind("HTTP/1.1 408", 0), 0u) << body_reply;
    EXPECT_NE(body_reply.find("--read-timeout"), std::string::npos) << body_reply;
    const std::string headers_reply = stalled_headers.read_until_closed(limit);
    EXPECT_TRUE(stalled_headers.closed_by_server());
    EXPECT_EQ(headers_reply.rfind("HTTP/1.1 408", 0), 0u) << headers_reply;

    // Malformed requests that arrived whole stay 400.
    RawConnection bad_method(server.port());
    ASSERT_TRUE(bad_method.send("BLAH /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    RawConnection bad_target(server.port());
    ASSERT_TRUE(bad_target.send("GET /health?a?b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    const std::string method_reply = bad_method.read_until_closed(limit);
    EXPECT_EQ(method_reply.rfind("HTTP/1.1 400", 0), 0u) << method_reply;
    const std::string target_reply = bad_target.read_until_closed(limit);
    EXPECT_EQ(target_reply.rfind("HTTP/1.1 400", 0), 0u) << target_reply;
}

// A stream whose client never reads: once the socket's buffers are full, a write waits --read-timeout and
// fails, and the slot is freed.
TEST(Serve, AStreamNobodyReadsIsCancelledAfterTheReadTimeout) {
    ServerProcess server({"--parallel", "1", "--read-timeout", "2", "--max-tokens", "1000000"});
    ASSERT_GT(server.port(), 0);
    constexpr int kSmallReceiveBuffer = 4096;
    RawConnection deaf(server.port(), kSmallReceiveBuffer);
    // Twenty alternatives per token make each chunk a few KiB: the buffers fill sooner.
    constexpr int kLogprobs = 20;
    const std::string request =
        body({{"prompt", "ROMEO:"}, {"max_tokens", 1000000}, {"stream", true}, {"logprobs", kLogprobs}});
    ASSERT_TRUE(deaf.send("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(request.size()) + "\r\n\r\n" + request));
    const auto start = std::chrono::steady_clock::now();
    while (metric(server, "dendro_requests_cancelled_total") < 1 &&
           std::chrono::steady_clock::now() - start < std::chrono::minutes(2)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    EXPECT_EQ(metric(server, "dendro_requests_cancelled_total"), 1);
    EXPECT_EQ(metric(server, "dendro_active_sequences"), 0);
    EXPECT_GT(metric(server, "dendro_generated_tokens_total"), 0);
    std::cerr << "the unread stream was cancelled after "
              << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()
              << " s\n";
}

// Every bad request gets a 4xx with an OpenAI-style error body, and the server goes on serving.
TEST(Serve, BadInputGetsAnErrorAndTheServerKeepsServing) {
    ServerProcess server(
        {"--max-prompt-tokens", "16", "--max-tokens", "64", "--max-body", "2K", "--read-timeout", "1"});
    ASSERT_GT(server.port(), 0);
    struct Case {
        std::string path, body, param;
        int status;
    };
    const std::string big(4096, 'a');
    const std::vector<Case> cases = {
        {"/v1/completions", "{\"prompt\": \"ROMEO:\"", "", 400},                   // malformed JSON
        {"/v1/completions", "[1, 2]", "", 400},                                    // not an object
        {"/v1/completions", body({{"prompt", 7}}), "prompt", 400},                 // wrong type
        {"/v1/completions", body({{"prompt", "a"}, {"bogus", 1}}), "bogus", 400},  // unknown field
        {"/v1/completions", body({{"prompt", ""}}), "prompt", 400},                // empty prompt
        {"/v1/completions", body({{"max_tokens", 4}}), "prompt", 400},             // no prompt
        {"/v1/completions", body({{"prompt", std::string(300, 'x') + " y z w v u t s r q p o n m l k j i h g f e"}}),
         "prompt", 400},  // over --max-prompt-tokens
        {"/v1/completions", body({{"prompt", "a"}, {"max_tokens", 65}}), "max_tokens", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"max_tokens", 0}}), "max_tokens", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"temperature", -1}}), "temperature", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"temperature", "hot"}}), "temperature", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"top_p", 0}}), "top_p", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"top_k", -2}}), "top_k", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"min_p", 1.5}}), "min_p", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"repetition_penalty", 0}}), "repetition_penalty", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"seed", -1}}), "seed", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"n", 2}}), "n", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"stop", json::array({1})}}), "stop", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"logprobs", 100}}), "logprobs", 400},
        {"/v1/completions", body({{"prompt", "a"}, {"stream", "yes"}}), "stream", 400},
        {"/v1/chat/completions", body({{"messages", json::array()}}), "messages", 400},
        {"/v1/chat/completions", body({{"messages", "hi"}}), "messages", 400},
        {"/v1/chat/completions", body({{"messages", json::array({{{"role", "robot"}, {"content", "x"}}})}}),
         "messages[0]", 400},
        {"/v1/chat/completions", body({{"messages", json::array({{{"role", "user"}}})}}), "messages[0]", 400},
        {"/v1/chat/completions",
         body({{"messages", json::array({{{"role", "user"}, {"content", "x"}}})}, {"top_logprobs", 2}}), "top_logprobs",
         400},
        {"/v1/completions", body({{"prompt", big}}), "", 413},  // over --max-body
    };
    for (const Case& c : cases) {
        const HttpReply r = http_request(server, "POST", c.path, c.body);
        EXPECT_EQ(r.status, c.status) << c.body.substr(0, 200) << " -> " << r.body;
        const json j = r.json();
        ASSERT_TRUE(j.contains("error")) << r.body;
        EXPECT_TRUE(j["error"]["message"].is_string());
        EXPECT_TRUE(j["error"]["type"].is_string());
        if (!c.param.empty()) EXPECT_EQ(j["error"]["param"], c.param) << r.body;
    }
    EXPECT_EQ(http_request(server, "GET", "/v1/nothing").status, 404);

    // A client that sends half a request and stalls is dropped after --read-timeout; others are served meanwhile.
    const TempDir dir;
    const std::string stalled =
        "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(server.port()) +
        " && printf 'POST /v1/completions HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100\\r\\n\\r\\n{' >&3"
        " && timeout 20 cat <&3 > " +
        shell_quote(dir.file("stalled")) + "; echo $? > " + shell_quote(dir.file("rc"));
    std::thread stall([&] { run_command("bash -c " + shell_quote(stalled)); });
    const HttpReply ok = http_request(server, "POST", "/v1/completions",
                                      body({{"prompt", "ROMEO:"}, {"max_tokens", 4}, {"temperature", 0}}));
    EXPECT_EQ(ok.status, 200) << ok.body;
    stall.join();
    std::ifstream rc(dir.file("rc"));
    int cat_status = -1;
    rc >> cat_status;
    EXPECT_EQ(cat_status, 0) << "the stalled connection was not closed by the server (timeout 20 s hit)";
    EXPECT_EQ(http_request(server, "GET", "/health").status, 200);
}

TEST(Serve, ApiKeyIsCheckedOnEveryRouteButHealth) {
    ServerProcess server({"--api-key", "sesame"});
    ASSERT_GT(server.port(), 0);
    const std::string request = body({{"prompt", "ROMEO:"}, {"max_tokens", 2}});
    EXPECT_EQ(http_request(server, "POST", "/v1/completions", request).status, 401);
    EXPECT_EQ(http_request(server, "POST", "/v1/completions", request, "-H 'Authorization: Bearer wrong'").status, 401);
    EXPECT_EQ(http_request(server, "POST", "/v1/chat/completions",
                           body({{"messages", json::array({{{"role", "user"}, {"content", "x"}}})}}))
                  .status,
              401);
    EXPECT_EQ(http_request(server, "GET", "/v1/models").status, 401);
    EXPECT_EQ(http_request(server, "GET", "/metrics").status, 401);
    EXPECT_EQ(http_request(server, "GET", "/health").status, 200);
    EXPECT_EQ(http_request(server, "POST", "/v1/completions", request, "-H 'Authorization: Bearer sesame'").status,
              200);
    EXPECT_EQ(http_request(server, "GET", "/metrics", "", "-H 'Authorization: Bearer sesame'").status, 200);
}

TEST(Serve, FullQueueGets503WithRetryAfter) {
    ServerProcess server({"--parallel", "1", "--queue", "0", "--max-tokens", "1000000"});
    ASSERT_GT(server.port(), 0);
    const TempDir dir;
    // One long request holds the only slot...
    HttpReply running;
    std::thread busy([&] {
        running =
            http_request(server, "POST", "/v1/completions",
                         body({{"prompt", "ROMEO:"}, {"max_tokens", 1000000}, {"stream", true}}), "-N --max-time 6");
    });
    // ...once it is running, the next one finds no room.
    for (int i = 0; i < 100 && metric(server, "dendro_active_sequences") < 1; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const HttpReply refused =
        http_request(server, "POST", "/v1/completions", body({{"prompt", "JULIET:"}, {"max_tokens", 2}}));
    busy.join();
    // The first request had the free slot, though the queue holds none.
    EXPECT_EQ(running.status, 200) << running.body;
    EXPECT_FALSE(stream_text(running.body).empty());
    EXPECT_EQ(refused.status, 503) << refused.body;
    EXPECT_NE(refused.headers.find("Retry-After: 1"), std::string::npos) << refused.headers;
    EXPECT_EQ(refused.json()["error"]["code"], "queue_full");
}

// SIGTERM: a stream running past the grace ends with finish_reason "shutdown" and [DONE], the server exits
// 0, and the state after the stream's tokens is in the cache directory.
TEST(Serve, SigtermEndsStreamsCleanlyAndKeepsTheCache) {
    const TempDir cache;
    ServerProcess server({"--cache-dir", cache.path(), "--shutdown-grace", "1", "--max-tokens", "1000000"});
    ASSERT_GT(server.port(), 0);
    const TempDir dir;
    std::thread stream([&] {
        const std::string request = body({{"prompt", "ROMEO:"}, {"max_tokens", 1000000}, {"stream", true}});
        std::ofstream(dir.file("request")) << request;
        run_command("curl -sS -N --max-time 60 -H 'Content-Type: application/json' --data-binary @" +
                    shell_quote(dir.file("request")) + " " + shell_quote(server.url("/v1/completions")) + " > " +
                    shell_quote(dir.file("stream")));
    });
    for (int i = 0; i < 200 && metric(server, "dendro_generated_tokens_total") < 10; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(server.terminate(), 0);
    stream.join();
    std::ifstream in(dir.file("stream"));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::vector<std::string> payloads = sse_payloads(text);
    ASSERT_GE(payloads.size(), 3u) << text;
    EXPECT_EQ(payloads.back(), "[DONE]");
    EXPECT_EQ(json::parse(payloads[payloads.size() - 2])["choices"][0]["finish_reason"], "shutdown");

    // The prompt's state and the state after the generated tokens, both on disk.
    const CommandResult ls = run_command(std::string(DENDRO_EXE) + " cache ls " + shell_quote(cache.path()));
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    std::vector<int> lengths;
    for (const auto& entry : std::filesystem::directory_iterator(cache.path() + "/entries")) {
        std::smatch m;
        const std::string name = entry.path().filename().string();
        if (std::regex_search(name, m, std::regex("^[0-9a-f]{32}-([0-9]+)-"))) lengths.push_back(std::stoi(m[1]));
    }
    ASSERT_EQ(lengths.size(), 2u) << ls.out;
    EXPECT_GT(std::max(lengths[0], lengths[1]), std::min(lengths[0], lengths[1]) + 5);
}

TEST(Serve, RequestsOverTheTimeoutEndWithFinishReasonTimeout) {
    ServerProcess server({"--timeout", "1", "--max-tokens", "1000000"});
    ASSERT_GT(server.port(), 0);
    const HttpReply r = http_request(server, "POST", "/v1/completions",
                                     body({{"prompt", "ROMEO:"}, {"max_tokens", 1000000}}), "--max-time 30");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "timeout");
    EXPECT_GT(r.json()["usage"]["completion_tokens"].get<int>(), 0);
    EXPECT_EQ(metric(server, "dendro_active_sequences"), 0);
}

// Two replicas sharing one --cache-dir (as behind a load balancer): a prompt computed by one is a disk hit
// on the other, whose RAM tier has never seen it.
TEST(Serve, ReplicasSharingACacheDirHitEachOthersPrefixes) {
    const TempDir cache;
    ServerProcess first({"--cache-dir", cache.path()});
    ServerProcess second({"--cache-dir", cache.path()});
    ASSERT_GT(first.port(), 0);
    ASSERT_GT(second.port(), 0);
    const std::string request =
        body({{"prompt", "ROMEO:\nWhat light through yonder window breaks?"}, {"max_tokens", 8}, {"temperature", 0}});
    const HttpReply a = http_request(first, "POST", "/v1/completions", request);
    // The first replica writes its states to disk in the background: the prompt's and the one after the reply.
    const auto entries = [&] {
        std::error_code ec;
        const auto it = std::filesystem::directory_iterator(cache.path() + "/entries", ec);
        return ec ? 0 : std::distance(it, std::filesystem::directory_iterator());
    };
    for (int i = 0; i < 500 && entries() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const HttpReply b = http_request(second, "POST", "/v1/completions", request);
    ASSERT_EQ(a.status, 200);
    ASSERT_EQ(b.status, 200);
    EXPECT_EQ(a.json()["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    EXPECT_EQ(b.json()["usage"]["prompt_tokens_details"]["cached_tokens"], b.json()["usage"]["prompt_tokens"]);
    EXPECT_EQ(a.json()["choices"][0]["text"], b.json()["choices"][0]["text"]);
    EXPECT_NE(second.log().find("disk hit"), std::string::npos) << second.log();
}

// The openai Python package (pinned, in its own venv, which every build directory shares) against the server.
TEST(Serve, OpenAiPythonClient) {
    ServerProcess server({"--chat-format", "plain", "--api-key", "sesame"});
    ASSERT_GT(server.port(), 0);
    const std::string script = std::string(DENDRO_SOURCE_DIR) + "/tests/serve/openai_client.py";
    const CommandResult r =
        run_command("python3 " + shell_quote(script) + " --base-url " + shell_quote(server.url("/v1")) +
                    " --api-key sesame");  // the venv: <source>/build/serve-client-venv, whatever the build dir
    if (r.exit_code == 77) GTEST_SKIP() << r.err;
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("openai client: all checks passed"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace dendro::test
