// `dendro serve` started by a test on a free loopback port (--port 0, the port read from its log), with the
// bundled model; SIGTERM and a wait when the object dies. Requests go through curl.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_command.h"
#include "temp_dir.h"

namespace dendro::test {

// The bundled model's path in the source tree.
std::string bundled_model_path();

// A child process running args (args[0] a path), its stdout and stderr to log_path; -1 when fork failed.
pid_t start_process(std::vector<std::string> args, const std::string& log_path);
// SIGTERM, then SIGKILL when it does not exit within a minute; its exit status, or -1 when it had to be
// killed or did not exit normally.
int stop_process(pid_t pid);
// A loopback TCP port that was free a moment ago (bound to port 0, then released).
int free_loopback_port();

class ServerProcess {
public:
    // Starts `dendro serve -m <bundled model> --port 0 <flags>` and waits until it listens.
    explicit ServerProcess(const std::vector<std::string>& flags);
    ~ServerProcess();
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    int port() const { return port_; }
    std::string url(const std::string& path) const;
    std::string log() const;  // its stderr so far
    // Sends SIGTERM and waits (bounded); the exit status, or -1 when it had to be killed or did not exit normally.
    int terminate();

private:
    TempDir dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

struct HttpReply {
    int status = 0;
    std::string headers;
    std::string body;
    nlohmann::json json() const;  // the body parsed (a test failure when it is not JSON)
};

// One request with curl. `body` (when not empty) is sent as the JSON body of a POST; extra_args go to curl
// as they are (already quoted).
HttpReply http_request(const ServerProcess& server, const std::string& method, const std::string& path,
                       const std::string& body = "", const std::string& extra_args = "");
// The same to any URL (a proxy in front of servers).
HttpReply http_request_url(const std::string& method, const std::string& url, const std::string& body = "",
                           const std::string& extra_args = "");

// The data payloads of a server-sent-event stream, "[DONE]" included.
std::vector<std::string> sse_payloads(const std::string& stream);
// The concatenated text of a completions or chat stream.
std::string stream_text(const std::string& stream);

}  // namespace dendro::test
