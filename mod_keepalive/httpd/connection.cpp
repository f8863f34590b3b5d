// The idle wait. Prefork and worker wait for the next request with a socket
// timeout, which begin_request() sets, per connection, to what the previous
// response decided. Event waits in per-vhost queues fixed at start-up
// (server_rec's keep_alive_timeout); the policy never advertises more than
// that queue enforces. How that wait ended (the client closed, or the
// timeout) is read from the request core then fails to read; whether the
// server closed it before the timeout its last response advertised (an
// early close), from how long it was idle.

#include "httpd/connection.h"

#include <new>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "http_core.h"
#include "http_log.h"

#include "httpd/connection_state.h"
#include "httpd/load.h"
#include "httpd/shared_counters.h"
#include "httpd/observe.h"
#include "httpd/response_facts.h"

APLOG_USE_MODULE(keepalive);

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
    if (!r->the_request || !r->the_request[0]) {
        if (cs->idle_end == IdleEnd::Waiting) {
            cs->idle_end = r->status == HTTP_REQUEST_TIME_OUT ? IdleEnd::TimedOut : IdleEnd::ClientGone;
            // read_request_line() stamps the request when its read fails:
            // when the idle wait ended.
            cs->idle_read_ended = r->request_time;
        }
    } else if (r->request_time != cs->idle_since) {
        // A request came after the kept response but none of its own was
        // recorded (HTTP/0.9, no header block): whatever ends the
        // connection now is not the end of an idle wait.
        cs->idle_since = 0;
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

__attribute__((noinline)) void log_early_close(const ConnectionState& cs, apr_time_t idle_us) {
    const server_rec* s = cs.last_server ? cs.last_server : cs.connection->base_server;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "mod_keepalive: idle connection from %s closed after %.1f s, before the %d s its last response "
                 "advertised (vhost %s): %s",
                 cs.connection->client_ip, static_cast<double>(idle_us) / APR_USEC_PER_SEC, cs.advertised_timeout_s,
                 vhost_name(s).c_str(),
                 cs.early_close == keepalive::CloseReason::EarlyCloseStopping
                     ? "the server was stopping (graceful restart or stop)"
                     : "the MPM had no idle worker");
}

// Whether the server closed the idle wait after a kept response before the
// timeout that response advertised, judged once, when the close starts.
// The idle time runs from the kept response's request (r->request_time,
// before the wait began) to the moment core's read gave up (prefork,
// worker) or the close began: event's listener closes idle connections
// without reading, and the worker that carries its close out runs
// pre_close_connection before its lingering close, which can last 2 s more
// before the connection's pool goes.
void judge_idle_end(ConnectionState* cs) {
    if (cs->idle_end_judged) return;
    cs->idle_end_judged = true;
    if (!cs->last_kept || !cs->idle_since) return;
    if (cs->idle_end != IdleEnd::Waiting && cs->idle_end != IdleEnd::TimedOut) return;
    const apr_time_t ended =
        cs->idle_end == IdleEnd::TimedOut && cs->idle_read_ended ? cs->idle_read_ended : apr_time_now();
    const apr_time_t idle_us = ended - cs->idle_since;
    if (!keepalive::closed_early(idle_us, cs->advertised_timeout_s)) return;
    cs->early_close = keepalive::early_close_reason(server_stopping());
    log_early_close(*cs, idle_us);
}

// pre_close_connection: the connection is about to be shut down (every MPM,
// before its lingering close).
//
// Under prefork and worker, an idle wait that timed out skips the
// lingering close: it would hold the worker up to 2 s more (SECONDS_TO_LINGER)
// for a FIN that an idle client seldom sends at once, while new clients may
// wait in the accept queue for that worker, and a promise of an idle
// timeout would hold workers longer than it says. Lingering protects a
// response the client may not have read yet from a reset; here the last
// response went out at least the idle timeout ago and the read found
// nothing, so a plain close sends a FIN as well (nginx closes idle
// keep-alive connections the same way). Setting c->aborted is how core's
// ap_start_lingering_close() is told to close at once.
int note_close(conn_rec* c) {
    ConnectionState* cs = connection_state(c);
    if (!cs) return DECLINED;
    if (mpm_waits_in_worker && cs->idle_end == IdleEnd::TimedOut) c->aborted = 1;
    judge_idle_end(cs);
    if (!cs->lingering) {
        cs->lingering = true;
        count_connection_lingering();
    }
    return DECLINED;
}

// Why the connection ended: its last response's reason when that response
// closed it; otherwise how the idle wait after it ended.
keepalive::CloseReason end_reason(const ConnectionState& cs) {
    if (!cs.last_kept) return cs.last_reason;
    if (cs.idle_end == IdleEnd::ClientGone) return keepalive::CloseReason::ClientGone;
    if (cs.early_close != keepalive::CloseReason::None) return cs.early_close;
    if (cs.idle_end == IdleEnd::Waiting && server_stopping()) return keepalive::CloseReason::ServerStopping;
    return keepalive::CloseReason::IdleTimeout;
}

apr_status_t count_end_of_connection(void* data) {
    auto* cs = static_cast<ConnectionState*>(data);
    count_connection_gone(cs->lingering);
    if (cs->requests == 0) return APR_SUCCESS;
    // A connection whose pool goes without a close (a child exiting).
    judge_idle_end(cs);
    const apr_time_t lived = apr_time_now() - cs->accepted;
    count_connection_end(cs->metrics_slot, end_reason(*cs), cs->requests,
                         lived > 0 ? static_cast<std::uint64_t>(lived) : 0);
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
    count_connection_opened();
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
    ap_hook_pre_close_connection(note_close, nullptr, nullptr, APR_HOOK_MIDDLE);
}

}  // namespace keepalive::httpd
