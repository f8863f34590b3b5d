// The idle wait. Prefork and worker wait for the next request with a socket
// timeout, which begin_request() sets, per connection, to what the previous
// response decided. Event waits in per-vhost queues fixed at start-up
// (server_rec's keep_alive_timeout); the policy never advertises more than
// that queue enforces. How that wait ended (the client closed, or the
// timeout) is read from the request core then fails to read.

#include "httpd/connection.h"

#include <new>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "http_core.h"

#include "httpd/connection_state.h"
#include "httpd/shared_counters.h"
#include "httpd/observe.h"
#include "httpd/response_facts.h"

namespace keepalive::httpd {
namespace {

// The end of a main request, with its pool. The per-response state forgets
// the request; and when it is the read that followed a kept response and
// no request line came, how it ended tells why the idle connection closed:
// ap_read_request() gives up on the socket timeout (prefork, worker; status
// 408) or on the client's close or a broken connection. Event closes
// timed-out connections in its listener without reading: a connection
// still waiting when it ends timed out.
apr_status_t end_of_request(void* data) {
    const auto* r = static_cast<const request_rec*>(data);
    ConnectionState* cs = connection_state(r->connection);
    if (!cs) return APR_SUCCESS;
    cs->response.forget_request();
    if ((!r->the_request || !r->the_request[0]) && cs->idle_end == IdleEnd::Waiting) {
        cs->idle_end = r->status == HTTP_REQUEST_TIME_OUT ? IdleEnd::TimedOut : IdleEnd::ClientGone;
    }
    return APR_SUCCESS;
}

// Main requests only, as core's own HTTP_HEADER: subrequests write into the
// main response, and internal redirects inherit the protocol filters.
bool is_first_main_request(const request_rec* r) {
    return !r->main && !r->prev && !r->connection->master;
}

// create_request: a new request on the connection, before core reads it.
int begin_request(request_rec* r) {
    ConnectionState* cs = connection_state(r->connection);
    if (!cs) return DECLINED;  // HTTP/2 streams, mod_proxy's backend connections
    ResponseState* st = &cs->response;
    if (!r->main && r->prev) {
        // An internal redirect (ErrorDocument after ap_die in BYTERANGE or
        // HTTP_HEADER) copies r->server from the request it replaces.
        st->swap.undo_for_redirect(r);
        // Its response is judged afresh when it reaches HTTP_HEADER; until
        // then, data reaching OBSERVE (an interim 103 a proxied error
        // document relays) is not the header block of the first response.
        if (st->phase == Phase::CoreDecides) st->phase = Phase::Fresh;
        return DECLINED;
    }
    if (!is_first_main_request(r)) return DECLINED;
    st->reset();
    apr_pool_cleanup_register(r->pool, r, end_of_request, apr_pool_cleanup_null);
    // Core is about to read this request. After a kept response that read
    // is the idle wait: under prefork and worker a blocking read with the
    // socket timeout core has just set from the vhost; make it the one the
    // previous response decided (and advertised no more than).
    if (mpm_waits_in_worker && cs->idle_end == IdleEnd::Waiting && cs->next_idle_timeout >= 0) {
        if (apr_socket_t* socket = ap_get_conn_socket(r->connection)) {
            apr_socket_timeout_set(socket, cs->next_idle_timeout);
        }
    }
    return DECLINED;
}

// Why the connection ended: its last response's reason when that response
// closed it; otherwise how the idle wait after it ended.
keepalive::CloseReason end_reason(const ConnectionState& cs) {
    if (!cs.last_kept) return cs.last_reason;
    if (cs.idle_end == IdleEnd::ClientGone) return keepalive::CloseReason::ClientGone;
    if (cs.idle_end == IdleEnd::Waiting && server_stopping()) return keepalive::CloseReason::ServerStopping;
    return keepalive::CloseReason::IdleTimeout;
}

apr_status_t count_end_of_connection(void* data) {
    const auto* cs = static_cast<const ConnectionState*>(data);
    if (cs->requests > 0) count_connection_end(cs->metrics_slot, end_reason(*cs), cs->requests);
    return APR_SUCCESS;
}

// pre_connection: a client connection opens.
int track_connection(conn_rec* c, void*) {
    // HTTP/2 streams and mod_proxy's backend connections: nothing to decide.
    if (c->master || c->outgoing) return DECLINED;
    auto* cs = new (apr_palloc(c->pool, sizeof(ConnectionState))) ConnectionState();
    cs->connection = c;
    cs->accepted = apr_time_now();
    ap_set_module_config(c->conn_config, &keepalive_module, cs);
    cs->observe_filter = add_observe_filter(cs, c);
    apr_pool_cleanup_register(c->pool, cs, count_end_of_connection, apr_pool_cleanup_null);
    return DECLINED;
}

// post_config: how the MPM waits for a connection's next request.
int query_mpm(apr_pool_t*, apr_pool_t*, apr_pool_t*, server_rec*) {
    int async = 0;
    mpm_waits_in_worker = !(ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) == APR_SUCCESS && async);
    return OK;
}

}  // namespace

void register_connection_hooks() {
    ap_hook_post_config(query_mpm, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(track_connection, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_create_request(begin_request, nullptr, nullptr, APR_HOOK_MIDDLE);
}

}  // namespace keepalive::httpd
