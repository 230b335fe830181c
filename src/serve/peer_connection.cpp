#include "serve/peer_connection.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <charconv>
#include <filesystem>
#include <system_error>

namespace dendro::serve {
namespace {

// The numeric host and port of a socket address; false when it is no internet address.
bool numeric_address(const sockaddr_storage& addr, socklen_t len, std::string& host, int& port) {
    char host_buf[NI_MAXHOST];
    char port_buf[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host_buf, sizeof host_buf, port_buf,
                    sizeof port_buf, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return false;
    }
    host = host_buf;
    const std::string_view p(port_buf);
    return std::from_chars(p.data(), p.data() + p.size(), port).ec == std::errc();
}

bool has_addresses(int fd, const std::string& local_addr, int local_port, const std::string& remote_addr,
                   int remote_port) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    std::string host;
    int port = -1;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;  // not a connected socket
    if (!numeric_address(addr, len, host, port) || port != remote_port || host != remote_addr) return false;
    len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
    return numeric_address(addr, len, host, port) && port == local_port && host == local_addr;
}

}  // namespace

std::optional<PeerConnection> PeerConnection::find(const std::string& local_addr, int local_port,
                                                   const std::string& remote_addr, int remote_port) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) {
        int fd = -1;
        const std::string name = it->path().filename().string();
        if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) continue;
        if (has_addresses(fd, local_addr, local_port, remote_addr, remote_port)) return PeerConnection(fd);
    }
    return std::nullopt;
}

bool PeerConnection::closed_by_peer() const {
    pollfd p{fd_, POLLRDHUP, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace dendro::serve
