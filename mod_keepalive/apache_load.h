// Worker occupancy for the load-adaptive mode, sampled from the scoreboard
// (Apache adapter: includes httpd headers).
#ifndef MOD_KEEPALIVE_APACHE_LOAD_H
#define MOD_KEEPALIVE_APACHE_LOAD_H

#include "httpd.h"

namespace keepalive::apache {

// Reads the MPM's worker limits; runs in each child at child_init.
void load_child_init(apr_pool_t* pchild, server_rec* s);

// The share of workers busy, in permille, or -1 when unknown. Walks the
// scoreboard at most once per `interval` per child process; between walks,
// and in the other threads while one walks, it returns the last sample.
int worker_occupancy(apr_time_t now, apr_interval_time_t interval);

}  // namespace keepalive::apache

#endif
