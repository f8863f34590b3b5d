// What the policy core needs to know about a response, read from httpd's
// request_rec and conn_rec, and core's own values for the virtual host.
#ifndef MOD_KEEPALIVE_HTTPD_RESPONSE_FACTS_H
#define MOD_KEEPALIVE_HTTPD_RESPONSE_FACTS_H

#include "httpd.h"
#include "apr_tables.h"

#include "core/policy.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

// apr_table_get() hashes the key before it finds a table empty; most
// requests' subprocess_env and err_headers_out are.
inline const char* table_get(const apr_table_t* table, const char* key) {
    return apr_table_elts(table)->nelts ? apr_table_get(table, key) : nullptr;
}

// The response's Connection fields, as handlers and filters set them.
struct ResponseConnection {
    const char* headers_out = nullptr;
    const char* err_headers_out = nullptr;
};

// The response's Connection fields, as handlers and filters left them.
// (apr_table_get() is cheap for a field that is not there, the usual case.)
inline ResponseConnection response_connection_of(const request_rec* r) {
    return {apr_table_get(r->headers_out, "Connection"), table_get(r->err_headers_out, "Connection")};
}

// Whether the MPM waits for the next request in the worker (prefork,
// worker), where the socket timeout can be set per connection, rather than
// in per-vhost queues fixed at start-up (event). Set at post_config.
extern bool mpm_waits_in_worker;

// Core's values for the request's virtual host, as the MPM enforces them.
keepalive::ConnectionLimits enforced_limits(const request_rec* r);

// The facts of this response as they stand before core decides. When the
// connection is already marked to close, and how many responses it kept,
// are read from the connection; the core-alone path overrides them with
// what they were before core decided.
keepalive::ResponseFacts gather_facts(const request_rec* r, const ResponseConnection& response_connection,
                                      bool disabled_by_condition);

// Whether the response body's end is known to the client (a length, chunking,
// or no body at all).
bool body_is_delimited(const request_rec* r);

inline bool is_http10(const keepalive::ResponseFacts& f) { return f.http_major == 1 && f.http_minor == 0; }

// Whether a graceful stop or restart is under way.
bool server_stopping();

// Handlers, CGI scripts, proxied backends and mod_headers can all put their
// own Keep-Alive and "Connection: keep-alive" into the response. Only the
// module's decision may reach the client, so theirs go; other Connection
// tokens ("close", "Upgrade") stay.
void drop_foreign_keepalive_headers(request_rec* r, const ResponseConnection& connection);

// A connection core kept: the decision it carried out, in the policy's terms.
// (Inline: it is on the path of every response core decides alone.)
inline keepalive::Decision core_keep_decision(const request_rec* r) {
    const server_rec* s = r->server;
    keepalive::Decision d;
    d.verdict = keepalive::Verdict::Keep;
    d.send_header = true;
    d.idle_timeout_us = d.advertised_timeout_us = s->keep_alive_timeout;
    d.advertised_timeout_s = static_cast<int>(apr_time_sec(s->keep_alive_timeout));
    // ap_set_keepalive() counted this response already.
    d.max_remaining = s->keep_alive_max ? s->keep_alive_max - (r->connection->keepalives - 1) : -1;
    return d;
}

// The keep-alive responses before this one, from c->keepalives after core
// decided.
int keepalives_before(const request_rec* r, bool kept, bool marked_close_before);

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_RESPONSE_FACTS_H
