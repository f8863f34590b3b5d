// What one read of a listener's accept queue costs: the getsockopt(TCP_INFO)
// the load-adaptive mode makes per Listen socket at each sample
// (mod_keepalive/httpd/accept_queue.cpp). Callgrind counts no kernel time,
// so this measures the system call's wall time directly.
//
//   g++ -O2 -o /tmp/accept_queue_read bench/accept_queue_read.cpp && /tmp/accept_queue_read
//
// A listening socket on 127.0.0.1 with `waiting` clients connected and not
// accepted (the queue the kernel walks nothing for: the length is a field),
// read `reads` times; prints the mean per read and the reads' share of a
// core at one sample per 10 ms per child (KeepAliveAdaptiveInterval).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
    const int reads = argc > 1 ? std::atoi(argv[1]) : 1000000;
    const int waiting = argc > 2 ? std::atoi(argv[2]) : 8;
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listener, 511) != 0 || getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        std::perror("listen");
        return 1;
    }
    std::vector<int> clients;
    for (int i = 0; i < waiting; ++i) {
        const int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            std::perror("connect");
            return 1;
        }
        clients.push_back(c);
    }
    tcp_info info{};
    unsigned long long seen = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reads; ++i) {
        socklen_t size = sizeof info;
        if (getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) {
            std::perror("getsockopt");
            return 1;
        }
        seen += info.tcpi_unacked;
    }
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    const double per_read = ns / reads;
    std::printf("accept queue: %llu waiting (expected %d), limit %u\n", seen / reads, waiting, info.tcpi_sacked);
    std::printf("one read: %.0f ns; at 100 samples/s per child: %.4f%% of a core per listener\n", per_read,
                per_read * 100 / 1e9 * 100);
    for (int c : clients) close(c);
    close(listener);
    return 0;
}
