// The load-adaptive mode's pressure inputs (core/pressure.h), sampled from
// the scoreboard and from the module's count of this process's connections.
#ifndef MOD_KEEPALIVE_HTTPD_LOAD_H
#define MOD_KEEPALIVE_HTTPD_LOAD_H

#include "httpd.h"

#include "core/pressure.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

// post_config: event's AsyncRequestWorkerFactor, the longest idle timeout
// (how long a process seen with no idle thread is remembered), how long a
// client must wait to count (two sampling intervals) and whether the accept
// queues can be read;
// child_init: each child reads the MPM's worker limits.
void register_load_hooks();

// The combined and shedding pressures in permille, each -1 when unknown
// (core/pressure.h). Samples at most once per `interval`: for the whole
// server under prefork and worker (one sample in shared memory), per child
// process under event; between samples, and while another samples, it
// returns the last sample.
struct AdaptivePressure {
    int combined = -1;
    int shedding = -1;
};
AdaptivePressure adaptive_pressure(apr_time_t now, apr_interval_time_t interval);

// The pressure now, every input, sampled afresh for the keepalive-status
// endpoint (the process inputs are those of the process that serves it).
keepalive::Pressure fresh_pressure(apr_time_t now);

// This process's client connections, as event counts them for its limit:
// one opened (pre_connection), one entering its lingering close
// (pre_close_connection), one gone (its pool cleanup; `lingering` when it
// was counted as such).
void count_connection_opened();
void count_connection_lingering();
void count_connection_gone(bool lingering);

}  // namespace keepalive::httpd

#endif
