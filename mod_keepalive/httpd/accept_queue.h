// The listeners' accept queues: how many clients wait for a worker to take
// their connection (core/pressure.h, the accept-queue input). Linux only,
// from TCP_INFO on the listening sockets, where the kernel reports the
// queue's length in tcpi_unacked and its limit in tcpi_sacked (what
// `ss -lnt` shows as Recv-Q and Send-Q).
#ifndef MOD_KEEPALIVE_HTTPD_ACCEPT_QUEUE_H
#define MOD_KEEPALIVE_HTTPD_ACCEPT_QUEUE_H

#include "httpd.h"

namespace keepalive::httpd {

struct AcceptQueue {
    int waiting = -1;    // clients waiting, summed over the listeners; -1 unknown
    int limit = 0;       // their limits summed (the listen backlogs as the kernel caps them)
    int listeners = 0;   // listening sockets read
};

// Every listener of this process (ap_listeners) read now: one getsockopt
// per listener. Unknown when one cannot be read (not Linux, not TCP, or
// closed), since a sum that leaves out a queue could hide a waiting client.
AcceptQueue read_accept_queues();

// post_config: whether the queues can be read, said once per start at
// notice level when a server uses KeepAliveAdaptive (and why not, when
// the mode falls back to worker occupancy).
void log_accept_queue_support(server_rec* main_server, bool adaptive_used, bool queue_wanted);

}  // namespace keepalive::httpd

#endif
