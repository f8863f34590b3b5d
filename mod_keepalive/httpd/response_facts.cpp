#include "httpd/response_facts.h"

#include <string>

#include "http_protocol.h"
#include "ap_mpm.h"
#include "apr_strings.h"

#include "core/connection_tokens.h"
#include "httpd/connection_state.h"

namespace keepalive::httpd {
namespace {

const char* first_header(const request_rec* r, const char* name) {
    const char* value = table_get(r->err_headers_out, name);
    return value ? value : apr_table_get(r->headers_out, name);
}

void drop_foreign_keepalive_headers(request_rec* r, apr_table_t* headers, const char* connection) {
    if (!apr_table_elts(headers)->nelts) return;
    apr_table_unset(headers, "Keep-Alive");
    if (!connection || !keepalive::list_has_token(connection, "keep-alive")) return;
    const std::string rest = keepalive::list_without_token(connection, "keep-alive");
    if (rest.empty()) {
        apr_table_unset(headers, "Connection");
    } else {
        apr_table_set(headers, "Connection", apr_pstrmemdup(r->pool, rest.data(), rest.size()));
    }
}

}  // namespace

bool mpm_waits_in_worker = true;

// Core prints r->server->keep_alive_timeout, but the sync MPMs and event both
// wait with the base server's (first vhost on the address) timeout when the
// name-based vhost did not set one: the policy must see what is enforced.
keepalive::ConnectionLimits enforced_limits(const request_rec* r) {
    const server_rec* s = r->server;
    const server_rec* timeout_source = s->keep_alive_timeout_set ? s : r->connection->base_server;
    keepalive::ConnectionLimits limits;
    limits.keep_alive = s->keep_alive != 0;
    limits.idle_timeout_us = timeout_source->keep_alive_timeout;
    limits.max_requests = s->keep_alive_max;
    limits.per_response_idle_timeout = mpm_waits_in_worker;
    return limits;
}

bool server_stopping() {
    int state = AP_MPMQ_RUNNING;
    return ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS && state == AP_MPMQ_STOPPING;
}

bool body_is_delimited(const request_rec* r) {
    return r->header_only || AP_STATUS_IS_HEADER_ONLY(r->status) || r->chunked ||
           first_header(r, "Content-Length") != nullptr ||
           ap_is_chunked(r->pool, first_header(r, "Transfer-Encoding"));
}

keepalive::ResponseFacts gather_facts(const request_rec* r, const ResponseConnection& response_connection,
                                      bool disabled_by_condition) {
    const conn_rec* c = r->connection;
    keepalive::ResponseFacts f;
    // The same downgrade core's basic_http_header_check() applies just before
    // it decides.
    int proto = r->proto_num;
    // force-no-vary: HTTP_HEADER turns the response into HTTP/1.0 and sets
    // force-response-1.0 itself, after the module has looked.
    const bool no_vary = table_get(r->subprocess_env, "force-no-vary") != nullptr;
    if (no_vary || (proto > HTTP_VERSION(1, 0) && table_get(r->subprocess_env, "downgrade-1.0"))) {
        proto = HTTP_VERSION(1, 0);
    }
    f.http_major = HTTP_VERSION_MAJOR(proto);
    f.http_minor = HTTP_VERSION_MINOR(proto);
    f.multiplexed = proto >= HTTP_VERSION(2, 0) || c->master != nullptr;
    f.headerless = r->assbackwards != 0;

    const char* request_connection = apr_table_get(r->headers_in, "Connection");
    f.request_connection = request_connection ? request_connection : "";
    // Core reads headers_out; a value only in err_headers_out still reaches
    // the client, so the policy honours either.
    const char* closing = response_connection.err_headers_out ? response_connection.err_headers_out
                                                               : response_connection.headers_out;
    f.response_connection = closing ? closing : "";

    f.status = r->status;
    f.head_request = r->header_only != 0;
    // Only an HTTP/1.0 response needs a known length to persist (HTTP/1.1
    // falls back to chunking); before CONTENT_LENGTH has run it may be
    // unknown, and OBSERVE judges it again.
    if (is_http10(f) && body_is_delimited(r)) f.framing = keepalive::BodyFraming::Delimited;
    f.expecting_100 = r->expecting_100 != 0;
    f.nokeepalive_env = table_get(r->subprocess_env, "nokeepalive") != nullptr;
    f.via_present = f.nokeepalive_env && apr_table_get(r->headers_in, "Via") != nullptr;
    f.forced_http10 = no_vary || (proto == HTTP_VERSION(1, 0) && table_get(r->subprocess_env, "force-response-1.0"));
    f.connection_marked_close = c->keepalive == AP_CONN_CLOSE;
    f.responses_kept_before = c->keepalives;
    if (const ConnectionState* cs = connection_state(c)) {
        f.connection_age_us = r->request_time - cs->accepted;
        // When it was accepted, and the child's connection number: bits
        // that differ between connections.
        f.connection_key = static_cast<std::uint64_t>(cs->accepted) ^ (static_cast<std::uint64_t>(c->id) << 44);
    }
    f.forward_proxy = r->proxyreq == PROXYREQ_PROXY;
    f.disabled_by_condition = disabled_by_condition;
    // Asked of the MPM only when it can change the verdict (policy_path.cpp).
    f.server_stopping = false;
    return f;
}

void drop_foreign_keepalive_headers(request_rec* r, const ResponseConnection& connection) {
    drop_foreign_keepalive_headers(r, r->headers_out, connection.headers_out);
    drop_foreign_keepalive_headers(r, r->err_headers_out, connection.err_headers_out);
}

// c->keepalives counts a kept response, and also the response that closes
// because the budget is used up (then keepalives was MaxKeepAliveRequests).
int keepalives_before(const request_rec* r, bool kept, bool marked_close_before) {
    const int count = r->connection->keepalives;
    const int max = r->server->keep_alive_max;
    if (kept) return count - 1;
    return !marked_close_before && max > 0 && count == max + 1 ? max : count;
}

}  // namespace keepalive::httpd
