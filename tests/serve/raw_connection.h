// A TCP connection to a loopback port driven byte by byte: for clients that misbehave on purpose (stall
// while sending, never read), which curl cannot play.
#pragma once

#include <chrono>
#include <string>

namespace dendro::test {

class RawConnection {
public:
    // Connects to 127.0.0.1:port; receive_buffer > 0 shrinks the socket's receive buffer first (a client
    // that never reads then fills up soon). A test failure when it cannot connect.
    explicit RawConnection(int port, int receive_buffer = 0);
    ~RawConnection();
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;

    bool send(const std::string& bytes);
    // True when the server has sent something or closed the connection (it does not block).
    bool has_news() const;
    // Everything the server sends until it closes the connection or `limit` passes.
    std::string read_until_closed(std::chrono::milliseconds limit);
    bool closed_by_server() const { return closed_; }

private:
    int fd_ = -1;
    bool closed_ = false;
};

}  // namespace dendro::test
