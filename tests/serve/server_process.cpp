#include "server_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

namespace dendro::test {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(60);
constexpr auto kPoll = std::chrono::milliseconds(20);

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// waitpid with a deadline; the exit status, or -1 for a signal, or -2 when it is still running.
int wait_for_exit(pid_t pid, std::chrono::steady_clock::duration timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        const pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (std::chrono::steady_clock::now() > end) return -2;
        std::this_thread::sleep_for(kPoll);
    }
}

}  // namespace

std::string bundled_model_path() { return std::string(DENDRO_MODELS_DIR) + "/dendro-shakespeare-2m.gguf"; }

pid_t start_process(std::vector<std::string> args, const std::string& log_path) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
        // A test binary killed before its destructors run (a ctest timeout, a closed output pipe) takes the
        // server with it instead of leaving it running.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(log, STDERR_FILENO);
        dup2(log, STDOUT_FILENO);
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

int stop_process(pid_t pid) {
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int status = wait_for_exit(pid, kStopTimeout);
    if (status == -2) {
        kill(pid, SIGKILL);
        wait_for_exit(pid, kStopTimeout);
        status = -1;
    }
    return status;
}

int free_loopback_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = 0;
    if (fd >= 0 && bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    if (fd >= 0) close(fd);
    if (port == 0) ADD_FAILURE() << "no free loopback port";
    return port;
}

ServerProcess::ServerProcess(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {DENDRO_EXE, "serve", "-m", bundled_model_path(), "--port", "0", "--threads", "1"};
    args.insert(args.end(), flags.begin(), flags.end());
    const std::string log_path = dir_.file("stderr");
    pid_ = start_process(args, log_path);
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    const auto end = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < end) {
        std::smatch m;
        const std::string text = slurp(log_path);
        if (std::regex_search(text, m, listening)) {
            port_ = std::stoi(m[1]);
            return;
        }
        if (wait_for_exit(pid_, std::chrono::seconds(0)) != -2) {
            pid_ = -1;
            ADD_FAILURE() << "dendro serve exited before listening:\n" << text;
            return;
        }
        std::this_thread::sleep_for(kPoll);
    }
    ADD_FAILURE() << "dendro serve did not listen within the start timeout:\n" << slurp(log_path);
}

ServerProcess::~ServerProcess() { terminate(); }

std::string ServerProcess::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::string ServerProcess::log() const { return slurp(dir_.file("stderr")); }

int ServerProcess::terminate() {
    const int status = stop_process(pid_);
    pid_ = -1;
    return status;
}

nlohmann::json HttpReply::json() const {
    try {
        return nlohmann::json::parse(body);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "not JSON (" << e.what() << "): " << body;
        return nullptr;
    }
}

HttpReply http_request(const ServerProcess& server, const std::string& method, const std::string& path,
                       const std::string& body, const std::string& extra_args) {
    return http_request_url(method, server.url(path), body, extra_args);
}

HttpReply http_request_url(const std::string& method, const std::string& url, const std::string& body,
                           const std::string& extra_args) {
    const TempDir dir;
    std::string command = "curl -sS --max-time 120 -X " + method + " -D " + shell_quote(dir.file("headers")) + " -o " +
                          shell_quote(dir.file("body")) + " -w '%{http_code}' " + extra_args + " ";
    if (!body.empty()) {
        const std::string body_path = dir.file("request");
        std::ofstream(body_path, std::ios::binary) << body;
        command += "-H 'Content-Type: application/json' --data-binary @" + shell_quote(body_path) + " ";
    }
    command += shell_quote(url);
    const CommandResult result = run_command(command);
    HttpReply reply;
    reply.status = result.out.empty() ? 0 : std::stoi(result.out);
    reply.headers = slurp(dir.file("headers"));
    reply.body = slurp(dir.file("body"));
    return reply;
}

std::vector<std::string> sse_payloads(const std::string& stream) {
    std::vector<std::string> payloads;
    size_t pos = 0;
    while ((pos = stream.find("data: ", pos)) != std::string::npos) {
        const size_t end = stream.find("\n\n", pos);
        if (end == std::string::npos) break;
        payloads.push_back(stream.substr(pos + 6, end - pos - 6));
        pos = end + 2;
    }
    return payloads;
}

std::string stream_text(const std::string& stream) {
    std::string text;
    for (const std::string& payload : sse_payloads(stream)) {
        if (payload == "[DONE]") continue;
        const nlohmann::json chunk = nlohmann::json::parse(payload);
        for (const auto& choice : chunk["choices"]) {
            if (choice.contains("text")) text += choice["text"].get<std::string>();
            if (choice.contains("delta") && choice["delta"].contains("content")) {
                text += choice["delta"]["content"].get<std::string>();
            }
        }
    }
    return text;
}

}  // namespace dendro::test
