// KEEPALIVE_OBSERVE: after core has decided and serialized the header
// block, judge what core did, put it in the block when the module adds the
// Keep-Alive fields, and record it (access-log note, trace log, counters,
// the idle timeout to enforce next).
#ifndef MOD_KEEPALIVE_HTTPD_OBSERVE_H
#define MOD_KEEPALIVE_HTTPD_OBSERVE_H

#include "httpd.h"

#include "httpd/connection_state.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

void register_observe_hooks();

// Adds this connection's OBSERVE, the first of its connection filters.
ap_filter_t* add_observe_filter(ConnectionState* cs, conn_rec* c);

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_OBSERVE_H
