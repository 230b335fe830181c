// The socket of one HTTP connection, found by its two addresses, and whether its client has closed it.
// cpp-httplib 0.11 (Debian 12's) gives a handler neither the socket nor a way to ask about the connection,
// and a non-streaming response writes nothing until the generation ends: without this, a client that left
// would keep its sequence slot until then (a stream notices at its next write).
#pragma once

#include <optional>
#include <string>

namespace dendro::serve {

class PeerConnection {
public:
    // The open TCP socket of this process whose local and remote addresses (numeric, as getnameinfo
    // writes them) and ports are these; nullopt when there is none. A TCP connection's four values are
    // unique, and the socket stays open while its request is being handled.
    static std::optional<PeerConnection> find(const std::string& local_addr, int local_port,
                                              const std::string& remote_addr, int remote_port);

    // True once the client has closed its side (FIN or reset): nothing it sends can follow. Does not block
    // and reads nothing (bytes of a pipelined next request stay for the HTTP library).
    bool closed_by_peer() const;

    int fd() const { return fd_; }

private:
    explicit PeerConnection(int fd) : fd_(fd) {}
    int fd_;
};

}  // namespace dendro::serve
