// httpd 2.4 only: the module's place inside core's HTTP_HEADER filter, and
// its edits of the header block that filter serializes. See the .cpp file
// for why this exists and what httpd trunk changes.
#ifndef MOD_KEEPALIVE_HTTPD_HEADER_TAKEOVER_24_H
#define MOD_KEEPALIVE_HTTPD_HEADER_TAKEOVER_24_H

#include "httpd.h"
#include "util_filter.h"
#include "mod_core.h"

#include "core/policy.h"
#include "httpd/connection_state.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

// Registers the module's HTTP_HEADER in core's place, KEEPALIVE_STRIP, and
// the configuration check that no other module took HTTP_HEADER.
void register_header_takeover_hooks();

// Whether the header block HTTP_HEADER (`f`) writes reaches OBSERVE whole:
// only HTTP_OUTERROR, which passes data through, lies between (mod_ratelimit,
// for one, would cut it into pieces).
inline bool block_reaches_observe(const ConnectionState* cs, const ap_filter_t* f) {
    const ap_filter_t* next = f->next;
    if (next && next->frec == ap_http_outerror_filter_handle) next = next->next;
    return next == cs->observe_filter;
}

// Adds KEEPALIVE_STRIP right after HTTP_HEADER: "KeepAliveHeader Never" on a
// kept response to a client that sent the token, for which core prints
// Keep-Alive itself.
void add_strip_filter(ResponseState* st, request_rec* r);

// Whether the response headers have a Keep-Alive field: core's, after it
// kept the connection of a client that sent the token.
bool has_keep_alive_field(const apr_table_t* headers);

// Writes "Keep-Alive: ..." and "Connection: Keep-Alive" into the header
// block HTTP_HEADER serialized (block_reaches_observe() made sure it is
// whole), before its final CRLF. False when the block does not end as
// HTTP_HEADER writes it; nothing is changed then.
bool insert_keep_alive_fields(conn_rec* c, apr_bucket_brigade* block, const keepalive::Decision& d);

// Takes the Keep-Alive field (and, with connection_too, the keep-alive
// element of Connection) back out of the header block at the head of `bb`.
// A partial block is left alone.
void strip_keep_alive_from_block(request_rec* r, apr_bucket_brigade* bb, bool connection_too);

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_HEADER_TAKEOVER_24_H
