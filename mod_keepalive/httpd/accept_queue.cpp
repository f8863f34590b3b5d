// Reading the listeners' accept queues (accept_queue.h). A listening TCP
// socket's TCP_INFO carries the accept queue in fields that mean something
// else on a connected socket (Linux, tcp_get_info(): sk_ack_backlog and
// sk_max_ack_backlog); tcpi_state says which kind of socket it is.

#include "httpd/accept_queue.h"

#include <cerrno>
#include <cstring>

#include "ap_listen.h"
#include "apr_portable.h"
#include "http_log.h"

#if defined(__linux__)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#define KEEPALIVE_HAVE_LISTEN_QUEUE 1
#endif

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

#if KEEPALIVE_HAVE_LISTEN_QUEUE
// One listener's queue, or false with errno (or EINVAL: not listening).
bool read_one(const ap_listen_rec* lr, int* waiting, int* limit) {
    apr_os_sock_t fd = -1;
    if (!lr->sd || apr_os_sock_get(&fd, lr->sd) != APR_SUCCESS || fd < 0) {
        errno = EBADF;
        return false;
    }
    struct tcp_info info;
    socklen_t size = sizeof info;
    std::memset(&info, 0, sizeof info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return false;
    if (info.tcpi_state != TCP_LISTEN) {
        errno = EINVAL;
        return false;
    }
    *waiting = static_cast<int>(info.tcpi_unacked);
    *limit = static_cast<int>(info.tcpi_sacked);
    return true;
}
#endif

}  // namespace

AcceptQueue read_accept_queues() {
    AcceptQueue q;
#if KEEPALIVE_HAVE_LISTEN_QUEUE
    int waiting = 0;
    for (const ap_listen_rec* lr = ap_listeners; lr; lr = lr->next) {
        int one = 0;
        int limit = 0;
        if (!read_one(lr, &one, &limit)) return AcceptQueue{};
        waiting += one;
        q.limit += limit;
        ++q.listeners;
    }
    if (q.listeners > 0) q.waiting = waiting;
#endif
    return q;
}

void log_accept_queue_support(server_rec* main_server, bool adaptive_used, bool queue_wanted) {
    if (!adaptive_used) return;
    if (!queue_wanted) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, main_server,
                     "mod_keepalive: KeepAliveAdaptiveQueue Off: the adaptive mode closes on worker occupancy");
        return;
    }
#if KEEPALIVE_HAVE_LISTEN_QUEUE
    for (const ap_listen_rec* lr = ap_listeners; lr; lr = lr->next) {
        int waiting = 0;
        int limit = 0;
        if (!read_one(lr, &waiting, &limit)) {
            const int err = errno;
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, main_server,
                         "mod_keepalive: cannot read the accept queue of listener %s (%s): the adaptive mode "
                         "closes on worker occupancy instead",
                         lr->bind_addr && lr->bind_addr->hostname ? lr->bind_addr->hostname : "?",
                         std::strerror(err));
            return;
        }
    }
    const AcceptQueue q = read_accept_queues();
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, main_server,
                 "mod_keepalive: the adaptive mode reads the accept queues of %d listener(s) (backlog %d)",
                 q.listeners, q.limit);
#else
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, main_server,
                 "mod_keepalive: accept queues cannot be read on this system (Linux only): the adaptive mode "
                 "closes on worker occupancy instead");
#endif
}

}  // namespace keepalive::httpd
