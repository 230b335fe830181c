// dendro serve beyond one machine, on loopback: two replicas sharing one --cache-dir behind nginx as the
// load balancer (docs/deploy.md's configuration), nginx run unprivileged from a generated configuration in
// a temporary directory. Skips when nginx is not installed (tools/setup.sh --test installs it).
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "run_command.h"
#include "server_process.h"
#include "temp_dir.h"

namespace dendro::test {
namespace {

using nlohmann::json;

constexpr auto kNginxStartTimeout = std::chrono::seconds(30);
constexpr auto kPoll = std::chrono::milliseconds(20);

// nginx's path: on PATH, or in the sbin directories a non-root PATH may lack; empty when not installed.
std::string find_nginx() {
    const CommandResult r = run_command("PATH=\"$PATH:/usr/sbin:/usr/local/sbin\" command -v nginx");
    if (r.exit_code != 0 || r.out.empty()) return "";
    return r.out.substr(0, r.out.find('\n'));
}

// The *_temp_path directives for the modules this nginx has: each must point into our directory, or nginx
// (unprivileged) fails to create its compiled-in /var/lib/nginx ones; a directive of a missing module is an error.
std::string temp_paths(const std::string& nginx, const TempDir& dir) {
    const std::string configure = run_command(shell_quote(nginx) + " -V 2>&1").out;
    std::string lines = "    client_body_temp_path " + dir.file("client_body") + ";\n";
    for (const std::string module : {"proxy", "fastcgi", "uwsgi", "scgi"}) {
        if (configure.find("--without-http_" + module + "_module") != std::string::npos) continue;
        lines += "    " + module + "_temp_path " + dir.file(module) + ";\n";
    }
    return lines;
}

// nginx in the foreground, one process (it stays the user who started it: root in CI, anyone else here),
// everything it writes inside `dir_`, listening on a free loopback port, round robin over the replicas.
class Nginx {
public:
    Nginx(const std::string& nginx, const std::vector<int>& replica_ports) {
        port_ = free_loopback_port();
        std::string servers;
        for (int p : replica_ports) servers += "        server 127.0.0.1:" + std::to_string(p) + " max_fails=0;\n";
        const std::string conf = "daemon off;\nmaster_process off;\nworker_processes 1;\npid " + dir_.file("nginx.pid") +
                                 ";\nerror_log " + dir_.file("error.log") + " info;\nevents { worker_connections 64; }\n" +
                                 "http {\n    access_log " + dir_.file("access.log") + ";\n" + temp_paths(nginx, dir_) +
                                 "    upstream dendro {\n" + servers + "        keepalive 8;\n    }\n" +
                                 "    server {\n        listen 127.0.0.1:" + std::to_string(port_) + ";\n" +
                                 "        location /v1/ {\n            proxy_pass http://dendro;\n"
                                 "            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n"
                                 "            proxy_buffering off;\n            proxy_read_timeout 600s;\n"
                                 "            client_max_body_size 1m;\n        }\n"
                                 "        location = /health { proxy_pass http://dendro; }\n    }\n}\n";
        std::ofstream(dir_.file("nginx.conf")) << conf;
        pid_ = start_process({nginx, "-p", dir_.path(), "-e", dir_.file("error.log"), "-c", dir_.file("nginx.conf")},
                             dir_.file("stderr"));
        const auto end = std::chrono::steady_clock::now() + kNginxStartTimeout;
        while (std::chrono::steady_clock::now() < end) {
            if (http_request_url("GET", url("/health"), "", "--max-time 5").status == 200) return;
            std::this_thread::sleep_for(kPoll);
        }
        ADD_FAILURE() << "nginx did not answer /health:\n" << log();
    }
    ~Nginx() { stop_process(pid_); }
    Nginx(const Nginx&) = delete;
    Nginx& operator=(const Nginx&) = delete;

    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    std::string log() const {
        return run_command("cat " + shell_quote(dir_.file("stderr")) + " " + shell_quote(dir_.file("error.log"))).out;
    }

private:
    TempDir dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

double metric(const ServerProcess& server, const std::string& name) {
    const HttpReply r = http_request(server, "GET", "/metrics");
    std::smatch m;
    if (!std::regex_search(r.body, m, std::regex("\n" + name + " ([0-9.e+-]+)\n"))) {
        ADD_FAILURE() << "no metric " << name << " in:\n" << r.body;
        return -1;
    }
    return std::stod(m[1]);
}

json chat(const std::string& system, const std::string& user) {
    return {{"messages", json::array({{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}})},
            {"max_tokens", 16},
            {"temperature", 0}};
}

TEST(ServeBehindNginx, ReplicasSharingACacheDirHitEachOthersPrefixes) {
    const std::string nginx = find_nginx();
    if (nginx.empty()) GTEST_SKIP() << "nginx is not installed (Debian: apt-get install nginx-light; tools/setup.sh --test does)";
    const TempDir cache;
    ServerProcess first({"--cache-dir", cache.path(), "--chat-format", "plain"});
    ServerProcess second({"--cache-dir", cache.path(), "--chat-format", "plain"});
    ASSERT_GT(first.port(), 0);
    ASSERT_GT(second.port(), 0);
    const Nginx proxy(nginx, {first.port(), second.port()});

    // A long shared prefix: the system message (a few hundred tokens), stored at its end by whoever computes it.
    std::string system;
    for (int i = 0; i < 12; ++i) system += "ROMEO: But soft, what light through yonder window breaks? It is the east. ";
    const HttpReply a = http_request_url("POST", proxy.url("/v1/chat/completions"), chat(system, "JULIET:").dump());
    ASSERT_EQ(a.status, 200) << a.body << proxy.log();
    EXPECT_EQ(a.json()["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    // The replica that served it writes its states in the background: the system message's end, the
    // prompt's end, the state after the reply.
    const auto entries = [&] {
        std::error_code ec;
        const auto it = std::filesystem::directory_iterator(cache.path() + "/entries", ec);
        return ec ? 0 : std::distance(it, std::filesystem::directory_iterator());
    };
    for (int i = 0; i < 500 && entries() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));

    const std::string user = "NURSE:";
    const HttpReply b = http_request_url("POST", proxy.url("/v1/chat/completions"), chat(system, user).dump());
    ASSERT_EQ(b.status, 200) << b.body << proxy.log();
    // Round robin sent one request to each replica (the /health checks went to both as well).
    EXPECT_EQ(metric(first, "dendro_requests_total"), 1);
    EXPECT_EQ(metric(second, "dendro_requests_total"), 1);
    const ServerProcess& hit = metric(second, "dendro_prefix_cache_hits_total") == 1 ? second : first;
    EXPECT_EQ(metric(hit, "dendro_prefix_cache_hits_total"), 1);
    EXPECT_NE(hit.log().find("disk hit"), std::string::npos) << hit.log();
    const int64_t cached = b.json()["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
    EXPECT_GT(cached, 0);
    EXPECT_LT(cached, b.json()["usage"]["prompt_tokens"].get<int64_t>());  // the user message was computed

    // The same request on a server without any cache: the same greedy text.
    ServerProcess uncached({"--cache-ram", "0", "--chat-format", "plain"});
    const HttpReply c = http_request(uncached, "POST", "/v1/chat/completions", chat(system, user).dump());
    ASSERT_EQ(c.status, 200) << c.body;
    EXPECT_EQ(c.json()["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    EXPECT_EQ(b.json()["choices"][0]["message"]["content"], c.json()["choices"][0]["message"]["content"]);
}

}  // namespace
}  // namespace dendro::test
