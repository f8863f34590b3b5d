// The counters in shared memory: one block per virtual host (as far as
// KeepAliveMetricsPerVhost and KeepAliveMetricsMaxVhosts allow), one for the
// hosts that found none ("other") and one for the whole server, updated by
// every child and thread with atomic adds (no lock on the request path),
// and kept across graceful restarts.
#ifndef MOD_KEEPALIVE_HTTPD_SHARED_COUNTERS_H
#define MOD_KEEPALIVE_HTTPD_SHARED_COUNTERS_H

#include <cstdint>
#include <string>
#include <vector>

#include "httpd.h"

#include "core/counters.h"
#include "core/policy.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

void register_shared_counter_hooks();

// "host:port", the name a server's counters are labelled with.
std::string vhost_name(const server_rec* s);

// The block index for a server, as assigned at post_config: 0 when it has
// no series of its own (it counts in the total only).
int metrics_slot(const server_rec* s);

void count_response(int slot, bool kept);
void count_connection_end(int slot, keepalive::CloseReason reason, std::uint64_t requests_served,
                          std::uint64_t lifetime_us);

// The whole server's counters, and once each, in the order of httpd's server
// list (the main server, then the virtual hosts last-defined first), those
// of every virtual host (and of "other") that has counted anything: a host
// that served nothing has no series.
CounterValues total_values();
std::vector<NamedValues> vhost_values();

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_SHARED_COUNTERS_H
