// The module's state for one client connection and for the response being
// served on it, explicit in one place (as mod_http2's h2_conn_ctx.h).
//
// HTTP/1.x serves one request at a time, so the per-response state lives
// inside the connection's: no allocation per request. It is reset for each
// main request; internal redirects and ErrorDocument responses share their
// main request's. HTTP/2 streams and mod_proxy's backend connections get no
// state (connection_state() is null for them).
#ifndef MOD_KEEPALIVE_HTTPD_CONNECTION_STATE_H
#define MOD_KEEPALIVE_HTTPD_CONNECTION_STATE_H

#include <cstdint>

#include "httpd.h"
#include "http_config.h"
#include "util_filter.h"

#include "core/policy.h"
#include "httpd/config.h"
#include "httpd/response_facts.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

// Where a response stands between the module and core's HTTP_HEADER.
enum class Phase {
    // Nothing decided yet for the request being served.
    Fresh,
    // Core decides alone (core_decides_alone()); OBSERVE records its verdict.
    CoreDecides,
    // The policy decided before core (policy_path.cpp); OBSERVE checks that
    // core carried it out and records it. Sticky for the request: its error
    // document must not reopen what the policy closed.
    PolicyDecided,
    // The header block passed OBSERVE, which recorded the verdict (unless
    // the policy found nothing to decide, as for HTTP/0.9), or the request
    // ended without a header block.
    Recorded,
};

// How the Keep-Alive fields reach a kept response, when the policy decided.
enum class FieldsPlacement {
    ByCore,       // core writes them (the client sent the token), or none are sent
    IntoBlock,    // OBSERVE writes them into the header block core serialized
    IntoHeaders,  // in headers_out before core, when a filter would cut the block
};

// The one change the module makes to a request for core to carry a
// decision out (policy_path.cpp): r->server swapped for a copy that carries
// the decision's timeout and budget, until core has written the header
// block. undo() puts the real server back: OBSERVE when the block passes,
// or the request ends without one; a second response to the request (an
// error document after an error bucket) before the policy decides again;
// an internal redirect.
class ServerSwap {
public:
    void apply(request_rec* r, server_rec* replacement) {
        request_ = r;
        original_ = r->server;
        r->server = replacement;
    }
    void undo() {
        if (!request_) return;
        request_->server = original_;
        forget();
    }
    // The request's pool is going: nothing may point into it any more.
    void forget() {
        request_ = nullptr;
        original_ = nullptr;
    }
    // An internal redirect copies r->server from the request it replaces:
    // give the new request the real one.
    void undo_for_redirect(request_rec* redirected) {
        if (request_ && redirected->server == request_->server) redirected->server = original_;
        undo();
    }

private:
    request_rec* request_ = nullptr;
    server_rec* original_ = nullptr;
};

// Per response, shared by the HTTP_HEADER takeover and OBSERVE.
struct ResponseState {
    Phase phase = Phase::Fresh;
    request_rec* request = nullptr;  // the request HTTP_HEADER saw
    keepalive::ConnectionLimits limits;
    keepalive::Settings settings;
    keepalive::ResponseFacts facts;
    keepalive::Decision decision;
    FieldsPlacement fields = FieldsPlacement::ByCore;
    ServerSwap swap;
    // Where core decides alone: what it decides from, as it was before it
    // did (after core, every closing response's Connection carries "close").
    bool marked_close_before = false;  // c->keepalive was AP_CONN_CLOSE
    ResponseConnection response_connection;

    // A new main request.
    void reset() {
        forget_request();
        phase = Phase::Fresh;
        fields = FieldsPlacement::ByCore;
    }
    // The request's pool is going: nothing may point into it any more, and
    // OBSERVE has nothing left to record for it.
    void forget_request() {
        request = nullptr;
        swap.forget();
        response_connection = {};
        if (phase != Phase::Recorded) phase = Phase::Fresh;
    }
};

// Whether the connection waits for its next request after a response, and
// how that wait ended, as core's read of it saw it (NotWaiting: before the
// first response).
enum class IdleEnd { NotWaiting, Waiting, TimedOut, ClientGone };

// Per connection, created once from the connection pool (connection.cpp).
struct ConnectionState {
    conn_rec* connection = nullptr;
    ap_filter_t* observe_filter = nullptr;  // this connection's OBSERVE
    apr_time_t accepted = 0;
    // The idle timeout the last kept response decided, when it is not the one
    // core's own loop sets (r->server's, or the base server's); else -1.
    apr_interval_time_t next_idle_timeout = -1;
    std::uint64_t requests = 0;  // responses the module decided on
    bool last_kept = false;
    keepalive::CloseReason last_reason = keepalive::CloseReason::None;
    int metrics_slot = 0;  // the virtual host of the last request
    IdleEnd idle_end = IdleEnd::NotWaiting;
    // For telling an early close (connection.cpp) after a kept response:
    // when its request arrived (r->request_time: no later than the idle wait
    // after it began; 0 when the request read after it was not recorded),
    // the timeout= it advertised, and its virtual host, for the log.
    apr_time_t idle_since = 0;
    int advertised_timeout_s = 0;
    const server_rec* last_server = nullptr;
    // When core's read after a kept response gave up (sync MPMs).
    apr_time_t idle_read_ended = 0;
    // The idle wait's end judged once, at the close (pre_close_connection)
    // or at the latest when the connection's pool goes: None, or an early
    // close's reason.
    bool idle_end_judged = false;
    keepalive::CloseReason early_close = keepalive::CloseReason::None;
    // In its lingering close (pre_close_connection): counted apart from the
    // process's open connections, as event does (load.cpp).
    bool lingering = false;
    ResponseState response;  // of the request being served
};

inline ConnectionState* connection_state(const conn_rec* c) {
    return static_cast<ConnectionState*>(ap_get_module_config(c->conn_config, &keepalive_module));
}

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_CONNECTION_STATE_H
