// Shared-memory counters, the keepalive-status handler and the mod_status
// section (Apache adapter: includes httpd headers).
#ifndef MOD_KEEPALIVE_APACHE_METRICS_H
#define MOD_KEEPALIVE_APACHE_METRICS_H

#include <cstdint>

#include "httpd.h"

#include "ka_policy.h"

namespace keepalive::apache {

// Creates (first start) or finds again (graceful restart) the shared counters
// and gives every server its block. Runs in the parent at post_config.
int metrics_post_config(apr_pool_t* pconf, apr_pool_t* ptemp, server_rec* main_server);

// The block index for a server, as assigned by metrics_post_config.
int metrics_slot(const server_rec* s);

void count_response(int slot, bool kept);
void count_connection_end(int slot, keepalive::CloseReason reason, std::uint64_t requests_served);

// SetHandler keepalive-status: Prometheus text, or JSON with ?format=json.
int metrics_handler(request_rec* r);

// mod_status's status_hook: a section on /server-status, lines on ?auto.
int metrics_status_section(request_rec* r, int flags);

}  // namespace keepalive::apache

#endif
