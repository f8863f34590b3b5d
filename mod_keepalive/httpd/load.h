// Worker occupancy for the load-adaptive mode, sampled from the scoreboard.
#ifndef MOD_KEEPALIVE_HTTPD_LOAD_H
#define MOD_KEEPALIVE_HTTPD_LOAD_H

#include "httpd.h"

#include "httpd/version_guard.h"

namespace keepalive::httpd {

// child_init: each child reads the MPM's worker limits.
void register_load_hooks();

// The share of workers busy, in permille, or -1 when unknown. Walks the
// scoreboard at most once per `interval` per child process; between walks,
// and in the other threads while one walks, it returns the last sample.
int worker_occupancy(apr_time_t now, apr_interval_time_t interval);

}  // namespace keepalive::httpd

#endif
