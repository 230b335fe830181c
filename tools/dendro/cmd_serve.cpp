// dendro serve: an OpenAI-compatible HTTP server (cpp-httplib) over the library's scheduler (src/serve/).
// This file only binds routes and flags; parsing, validation, batching, caching and the JSON shapes live in
// the library. SIGTERM or SIGINT: new requests get 503, running ones get --shutdown-grace seconds to
// finish, the rest end with finish_reason "shutdown"; every state is in the cache before the exit.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <httplib.h>

#include "backend/backend.h"
#include "bundled_model.h"
#include "cache/prefix_cache.h"
#include "cache/prefix_store.h"
#include "commands.h"
#include "common/byte_size.h"
#include "common/error.h"
#include "flag_checks.h"
#include "model/model.h"
#include "model/model_fingerprint.h"
#include "serve/api_error.h"
#include "serve/job_spec.h"
#include "serve/metrics.h"
#include "serve/peer_connection.h"
#include "serve/ram_prefix_tier.h"
#include "serve/request.h"
#include "serve/responses.h"
#include "serve/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace dendro::cli {
namespace {

using namespace dendro::serve;
using nlohmann::json;

// How often a stream looks for new tokens (and so notices a finished job).
constexpr auto kStreamPoll = std::chrono::milliseconds(100);
// How often a non-streaming request looks whether its client has closed the connection.
constexpr auto kDisconnectPoll = std::chrono::milliseconds(100);
// After the scheduler stopped, how long open streams get to send their last chunks.
constexpr auto kStreamDrain = std::chrono::seconds(5);
constexpr const char* kRetryAfterSeconds = "1";

struct ServeOptions {
    std::string model_path;
    std::string model_name;
    std::string host = "127.0.0.1";
    int port = 8080;
    int parallel = 4;
    size_t queue = 16;
    int n_threads = 0;
    std::string device = "auto";
    PromptCacheOptions cache;
    uint64_t cache_ram_bytes = uint64_t{512} << 20;
    int64_t prefill_chunk = 256;
    int64_t max_prompt_tokens = 8192;
    int32_t max_tokens = 4096;
    int timeout_s = 600;
    int read_timeout_s = 10;
    uint64_t max_body_bytes = uint64_t{1} << 20;
    std::string api_key;
    std::string chat_format = "auto";
    int shutdown_grace_s = 10;
};

void log_line(const std::string& line) { std::fprintf(stderr, "dendro serve: %s\n", line.c_str()); }

void send_error(httplib::Response& res, int status, const json& body) {
    res.status = status;
    if (status == kHttpServiceUnavailable) res.set_header("Retry-After", kRetryAfterSeconds);
    res.set_content(json_text(body), "application/json");
}

void send_api_error(httplib::Response& res, const ApiError& e) { send_error(res, e.status(), e.body()); }

// Whether httplib's own 400 means the request stopped arriving (the read timed out or the connection was cut)
// rather than that it was malformed: httplib 0.11 answers both with 400. Its request line was valid (httplib
// sets the path only once the method, the version and the word count passed, and refuses a target with two
// '?' after setting it), and its headers or its body were cut short: a body shorter than its Content-Length;
// without a length, the headers never ended or the body (read until the client closes) timed out. Chunked
// and multipart bodies stay 400: they can also be malformed.
bool read_stopped_short(const httplib::Request& req) {
    const bool valid_line = !req.path.empty() && std::count(req.target.begin(), req.target.end(), '?') <= 1;
    if (!valid_line || req.is_multipart_form_data() || req.get_header_value("Transfer-Encoding") == "chunked") {
        return false;
    }
    return !req.has_header("Content-Length") || req.body.size() < req.get_header_value<uint64_t>("Content-Length");
}

std::string default_model_name(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// The shared state of one streamed response between calls of its content provider.
struct StreamState {
    std::shared_ptr<Job> job;
    ResponseIdentity who;
    bool logprobs = false;
    bool include_usage = false;
    bool first = true;
};

class Server {
public:
    explicit Server(ServeOptions& opt) : opt_(opt) {}
    void run();

private:
    void check_api_key(const httplib::Request& req) const;
    void generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
    void configure_routes();
    void wait_for_signal_and_stop(std::thread& http_thread);

    ServeOptions& opt_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<RamPrefixTier> cache_;
    ServeMetrics metrics_;
    std::unique_ptr<Scheduler> scheduler_;
    ChatFormat chat_format_ = ChatFormat::Plain;
    RequestLimits request_limits_;
    PromptLimits prompt_limits_;
    httplib::Server http_;
    std::atomic<uint64_t> next_id_{1};
    std::atomic<int> open_streams_{0};
    std::atomic<bool> stopping_{false};
    int64_t started_at_ = std::time(nullptr);
};

void Server::check_api_key(const httplib::Request& req) const {
    if (opt_.api_key.empty()) return;
    if (req.get_header_value("Authorization") != "Bearer " + opt_.api_key) {
        throw ApiError(kHttpUnauthorized, "invalid_request_error",
                       "missing or wrong API key (Authorization: Bearer KEY)", "", "invalid_api_key");
    }
}

void Server::generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    try {
        check_api_key(req);
        const GenerationRequest request =
            parse_generation_request(endpoint, parse_json_body(req.body), request_limits_);
        const bool chat = endpoint == Endpoint::ChatCompletions;
        const std::string id = concat(chat ? "chatcmpl-" : "cmpl-", next_id_++);
        auto job = scheduler_->submit(make_job_spec(request, *tokenizer_, chat_format_, prompt_limits_, id));
        const ResponseIdentity who{endpoint, id, std::time(nullptr),
                                   request.model.empty() ? opt_.model_name : request.model};
        const bool logprobs = request.top_logprobs >= 0;
        if (!request.stream) {
            // Nothing is written before the end, so a client that left is seen on its socket instead.
            const std::optional<PeerConnection> peer =
                PeerConnection::find(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
            if (!peer) log_line(concat("request ", id, ": its socket was not found; if its client leaves, it runs on"));
            while (!job->wait_finished_for(kDisconnectPoll)) {
                if (peer && peer->closed_by_peer()) job->cancel();  // the slot is freed at the next step
            }
            std::vector<GeneratedPiece> pieces;
            job->take(pieces, std::chrono::milliseconds(0));
            res.set_content(
                json_text(full_response(who, *tokenizer_, pieces, logprobs, job->finish_reason(), job->usage())),
                "application/json");
            return;
        }
        auto state = std::make_shared<StreamState>(StreamState{job, who, logprobs, request.include_usage_in_stream});
        ++open_streams_;
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, state](size_t, httplib::DataSink& sink) {
                std::vector<GeneratedPiece> pieces;
                const bool done = state->job->take(pieces, kStreamPoll);
                if (!pieces.empty()) {
                    const std::string event =
                        sse_event(stream_chunk(state->who, *tokenizer_, pieces, state->logprobs, state->first));
                    state->first = false;
                    if (!sink.write(event.data(), event.size())) return false;
                }
                if (done) {
                    std::string tail = sse_event(final_chunk(state->who, state->job->finish_reason()));
                    if (state->include_usage) tail += sse_event(usage_chunk(state->who, state->job->usage()));
                    tail += kSseDone;
                    if (!sink.write(tail.data(), tail.size())) return false;
                    sink.done();
                }
                return true;
            },
            [this, state](bool success) {
                // The client went away (or a write failed): the scheduler frees the slot at its next step.
                if (!success) state->job->cancel();
                --open_streams_;
            });
    } catch (const ApiError& e) {
        ++metrics_.requests_rejected;
        send_api_error(res, e);
    }
}

void Server::configure_routes() {
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
        generation(Endpoint::Completions, req, res);
    });
    http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
        generation(Endpoint::ChatCompletions, req, res);
    });
    http_.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
        try {
            check_api_key(req);
        } catch (const ApiError& e) {
            return send_api_error(res, e);
        }
        const json model = {
            {"id", opt_.model_name}, {"object", "model"}, {"created", started_at_}, {"owned_by", "dendro"}};
        res.set_content(json_text({{"object", "list"}, {"data", json::array({model})}}), "application/json");
    });
    http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        if (stopping_) return send_error(res, kHttpServiceUnavailable, {{"status", "shutting down"}});
        res.set_content(json_text({{"status", "ok"}}), "application/json");
    });
    http_.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
        try {
            check_api_key(req);
        } catch (const ApiError& e) {
            return send_api_error(res, e);
        }
        res.set_content(metrics_.render(), "text/plain; version=0.0.4");
    });
    // Errors httplib answers by itself (no route, body over --max-body, a malformed request) get a body too.
    http_.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                    httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == kHttpBadRequest && read_stopped_short(req)) {
            res.status = kHttpRequestTimeout;
            res.set_header("Connection", "close");
        }
        const std::string message = res.status == kHttpNotFound ? concat("no route ", req.method, " ", req.path)
                                    : res.status == kHttpRequestTimeout
                                        ? std::string("the request did not arrive within this server's --read-timeout")
                                    : res.status == kHttpPayloadTooLarge
                                        ? std::string("the body is over this server's size limit (--max-body)")
                                        : concat("HTTP ", res.status);
        res.set_content(json_text(ApiError::error_body(message, "invalid_request_error", "", "")), "application/json");
        return httplib::Server::HandlerResponse::Handled;
    }));
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string message = "internal error";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            message = e.what();
        } catch (...) {
        }
        log_line(concat("error: ", message));
        send_error(res, kHttpInternalError, ApiError::error_body(message, "server_error", "", ""));
    });
}

void Server::wait_for_signal_and_stop(std::thread& http_thread) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    stopping_ = true;
    log_line(concat(signal_number == SIGTERM ? "SIGTERM" : "SIGINT", ": taking no new requests, giving running ones ",
                    opt_.shutdown_grace_s, " s"));
    scheduler_->shutdown(std::chrono::seconds(opt_.shutdown_grace_s));
    const auto drain_end = std::chrono::steady_clock::now() + kStreamDrain;
    while (open_streams_ > 0 && std::chrono::steady_clock::now() < drain_end) std::this_thread::sleep_for(kStreamPoll);
    http_.stop();
    http_thread.join();
    if (cache_) cache_->flush();
    log_line("stopped");
}

void Server::run() {
    // Signals are taken by sigwait on this thread only: block them before any other thread starts.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client that vanished is a failed write, not the end of the server

    if (opt_.parallel < 1) fail("--parallel must be >= 1, got ", opt_.parallel);
    if (opt_.max_prompt_tokens < 1) fail("--max-prompt-tokens must be >= 1, got ", opt_.max_prompt_tokens);
    if (opt_.max_tokens < 1) fail("--max-tokens must be >= 1, got ", opt_.max_tokens);
    const std::string model_path = opt_.model_path.empty() ? default_model_path() : opt_.model_path;
    if (opt_.model_name.empty()) opt_.model_name = default_model_name(model_path);
    model_ = Model::load(model_path);
    tokenizer_ = Tokenizer::from_gguf(model_->gguf());
    const std::optional<ChatFormat> format = parse_chat_format(opt_.chat_format);
    chat_format_ = format ? *format : detect_chat_format(*tokenizer_);

    BackendOptions backend_options;
    backend_options.n_threads = opt_.n_threads;
    backend_options.n_seq_max = opt_.parallel;
    backend_ = make_backend(parse_device(opt_.device), *model_, backend_options);
    SequenceState state;
    backend_->read_state(0, state);

    const auto warn = [](const std::string& message) { log_line(concat("warning: ", message)); };
    std::unique_ptr<PrefixStore> disk = open_prefix_store(opt_.cache, *model_, warn);
    if (disk || opt_.cache_ram_bytes > 0) {
        // The disk tier's memo makes this a lookup; a RAM-only cache hashes the file and writes no memo anywhere.
        const std::string memo =
            opt_.cache.cache_dir.empty()
                ? std::string()
                : CacheDirectory::open(opt_.cache.cache_dir, false).fingerprint_memo_dir().string();
        cache_ = std::make_unique<RamPrefixTier>(fingerprint_model_file(model_->gguf(), memo), opt_.cache_ram_bytes,
                                                 std::move(disk), warn);
    }

    request_limits_.max_tokens = opt_.max_tokens;
    prompt_limits_.max_prompt_tokens = opt_.max_prompt_tokens;
    prompt_limits_.timeout = std::chrono::seconds(opt_.timeout_s);
    SchedulerOptions scheduler_options;
    scheduler_options.max_queue = opt_.queue;
    scheduler_options.prefill_chunk = opt_.prefill_chunk;
    scheduler_options.checkpoint_every = opt_.cache.checkpoint_every;
    scheduler_ =
        std::make_unique<Scheduler>(*backend_, *tokenizer_, cache_.get(), metrics_, scheduler_options, log_line);

    // One HTTP thread per connection that can be busy at once: the slots, the queue and a few for the
    // cheap routes (/health, /metrics) and for refusing requests.
    constexpr size_t kSpareHttpThreads = 4;
    const size_t http_threads = static_cast<size_t>(opt_.parallel) + opt_.queue + kSpareHttpThreads;
    http_.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
    http_.set_payload_max_length(opt_.max_body_bytes);
    http_.set_read_timeout(opt_.read_timeout_s, 0);
    http_.set_write_timeout(opt_.read_timeout_s, 0);
    configure_routes();

    int port = opt_.port;
    if (port == 0) {
        port = http_.bind_to_any_port(opt_.host);
        if (port < 0) fail("cannot listen on ", opt_.host, " (any port)");
    } else if (!http_.bind_to_port(opt_.host, port)) {
        fail("cannot listen on ", opt_.host, ":", port, " (in use, or not an address of this machine?)");
    }
    log_line(concat(opt_.model_name, " on ", backend_->name(), ", ", opt_.parallel, " sequence slots of ",
                    format_byte_size(state.bytes()), " state each (", format_byte_size(state.bytes() * opt_.parallel),
                    " in all), queue of ", opt_.queue, ", chat format ", chat_format_name(chat_format_),
                    ", prefix cache ",
                    cache_ ? concat(format_byte_size(opt_.cache_ram_bytes), " RAM",
                                    opt_.cache.cache_dir.empty() ? "" : " + " + opt_.cache.cache_dir)
                           : std::string("off")));
    log_line(concat("listening on http://", opt_.host, ":", port));
    std::thread http_thread([this] { http_.listen_after_bind(); });
    wait_for_signal_and_stop(http_thread);
}

}  // namespace

void add_serve_command(CLI::App& app) {
    auto opt = std::make_shared<ServeOptions>();
    CLI::App* cmd =
        app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching and a prefix cache");
    non_empty_path(cmd->add_option("-m,--model", opt->model_path, "GGUF model file (default: the bundled model)"));
    cmd->add_option("--model-name", opt->model_name, "Model id in /v1/models and responses (default: the file's stem)");
    cmd->add_option("--host", opt->host, "Address to listen on")->capture_default_str();
    cmd->add_option("--port", opt->port, "Port to listen on (0 = any free port, printed)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    cmd->add_option("--parallel", opt->parallel, "Sequence slots: requests generated at once")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    cmd->add_option("--queue", opt->queue, "Requests waiting beyond the slots; more get HTTP 503")
        ->check(CLI::Range(0, 4096))
        ->capture_default_str();
    add_thread_count_option(cmd, opt->n_threads);
    cmd->add_option("--device", opt->device, "auto, cpu or cuda")->capture_default_str();
    non_empty_path(cmd->add_option("--cache-dir", opt->cache.cache_dir,
                                   "Disk tier of the prefix cache, shareable between servers (see `dendro cache`)"))
        ->type_name("DIR");
    cmd->add_option_function<std::string>(
           "--cache-size", [opt](const std::string& text) { opt->cache.max_bytes = parse_byte_size(text); },
           concat("Size bound of --cache-dir (default ", format_byte_size(kDefaultPrefixCacheBytes), ")"))
        ->type_name("SIZE");
    cmd->add_option_function<std::string>(
           "--cache-ram",
           [opt](const std::string& text) { opt->cache_ram_bytes = text == "0" ? 0 : parse_byte_size(text); },
           "RAM tier of the prefix cache, LRU (default 512M; 0 = none)")
        ->type_name("SIZE");
    cmd->add_option("--cache-every", opt->cache.checkpoint_every,
                    "A prefix-cache checkpoint every N prompt tokens, besides message ends and prompt ends (0 = none)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--prefill-chunk", opt->prefill_chunk,
                    "Prompt tokens prefilled per scheduler step, between decode steps of running requests")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
        ->capture_default_str();
    cmd->add_option("--max-prompt-tokens", opt->max_prompt_tokens, "Longest prompt accepted (HTTP 400 beyond)")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
        ->capture_default_str();
    cmd->add_option("--max-tokens", opt->max_tokens, "Largest max_tokens a request may ask for")
        ->check(CLI::Range(1, 1 << 24))
        ->capture_default_str();
    cmd->add_option("--timeout", opt->timeout_s, "Seconds a request may take from arrival to its last token")
        ->check(CLI::Range(1, 86400))
        ->capture_default_str();
    cmd->add_option("--read-timeout", opt->read_timeout_s, "Seconds a client may stall while sending or receiving")
        ->check(CLI::Range(1, 3600))
        ->capture_default_str();
    cmd->add_option_function<std::string>(
           "--max-body", [opt](const std::string& text) { opt->max_body_bytes = parse_byte_size(text); },
           "Largest request body (HTTP 413 beyond; default 1M)")
        ->type_name("SIZE");
    cmd->add_option("--api-key", opt->api_key, "Require 'Authorization: Bearer KEY' on every route but /health");
    cmd->add_option("--chat-format", opt->chat_format, "auto, plain or mistral-v3 (auto: from the vocabulary)")
        ->capture_default_str();
    cmd->add_option("--shutdown-grace", opt->shutdown_grace_s,
                    "On SIGTERM, seconds running requests get to finish before they are cancelled")
        ->check(CLI::Range(0, 3600))
        ->capture_default_str();
    cmd->callback([opt] { Server(*opt).run(); });
}

}  // namespace dendro::cli
