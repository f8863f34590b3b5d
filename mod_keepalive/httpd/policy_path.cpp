// Two ways through HTTP_HEADER, chosen per response by before_core():
//
//  - Core decides alone when the policy would decide as core does (see
//    core_decides_alone()). The module only drops Keep-Alive values a
//    handler set and notes what core decides from; OBSERVE records the
//    verdict and, for a client without the token, writes the Keep-Alive
//    fields into the header block.
//  - Otherwise the policy decides now (prepare()), and the module arranges
//    for core to carry the decision out:
//      close -> c->keepalive = AP_CONN_CLOSE, core writes "Connection: close";
//      keep  -> when the request carried the keep-alive token, core writes
//               "Keep-Alive: timeout=T, max=M" itself from r->server's
//               values: when the decision's timeout or budget differ from
//               them, r->server is swapped for a request-pool copy that
//               carries them, for the duration of HTTP_HEADER (ServerSwap).
//               Otherwise (HTTP/1.1 clients, persistent without the token)
//               OBSERVE writes the same two fields into the block, or, when
//               a filter between would cut it into pieces, they go into the
//               response headers now.

#include "httpd/policy_path.h"

#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_connection.h"
#include "apr_strings.h"

#include "core/wire_format.h"
#include "httpd/config.h"
#include "httpd/drain.h"
#include "httpd/header_takeover_24.h"
#include "httpd/load.h"
#include "httpd/response_facts.h"

namespace keepalive::httpd {
namespace {

// Whether core, left alone, decides what the policy would, prints what the
// MPM enforces, and OBSERVE gets the header block whole: then the module
// need not decide before core, only report after it.
//  - HTTP/1.1, and not made HTTP/1.0 by downgrade-1.0 or force-no-vary: for
//    it the policy's rules are core's, token matching included
//    (core/connection_tokens.h, httpd_find_token); HTTP/1.0 has the module's own rules (KeepAliveHTTP10,
//    forward proxies).
//  - None of the module's directives applies (policy_is_cores());
//    KeepAliveIdleTimeout and KeepAliveMaxRequests at server level are
//    core's own values and do not count.
//  - The timeout core prints, r->server's, is the one enforced: a name-based
//    vhost without its own KeepAliveTimeout is held to the base server's.
//  - The block reaches OBSERVE whole, so that OBSERVE can write into it.
//  - No drain is under way: core knows nothing of it.
bool core_decides_alone(const ConnectionState* cs, const ap_filter_t* f) {
    const request_rec* r = f->r;
    const server_rec* s = r->server;
    if (r->proto_num != HTTP_VERSION(1, 1)) return false;
    if (table_get(r->subprocess_env, "downgrade-1.0") || table_get(r->subprocess_env, "force-no-vary")) return false;
    if (!s->keep_alive_timeout_set && s->keep_alive_timeout != r->connection->base_server->keep_alive_timeout) {
        return false;
    }
    return block_reaches_observe(cs, f) && policy_is_cores(r) && !drain_active();
}

// An error bucket makes core discard the response it comes with and send an
// error document through HTTP_HEADER again; an EOC ends the connection.
bool carries_error_or_eoc(apr_bucket_brigade* bb) {
    for (apr_bucket* b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb); b = APR_BUCKET_NEXT(b)) {
        if (AP_BUCKET_IS_ERROR(b) || AP_BUCKET_IS_EOC(b)) return true;
    }
    return false;
}

// The two fields core writes for a client that sent the keep-alive token,
// with the decision's values: "Keep-Alive: timeout=T, max=M" and
// "Connection: Keep-Alive".
void add_keep_alive_header(ResponseState* st, request_rec* r) {
    auto* value = static_cast<char(*)[keepalive::kKeepAliveValueSize]>(
        apr_palloc(r->pool, keepalive::kKeepAliveValueSize));
    keepalive::format_keep_alive_value(st->decision, *value);
    apr_table_setn(r->headers_out, "Keep-Alive", *value);
    apr_table_mergen(r->headers_out, "Connection", "Keep-Alive");
    st->fields = FieldsPlacement::IntoHeaders;
}

// Core decides and prints from r->server's keep_alive_timeout and
// keep_alive_max: a request-pool copy that carries the decision's values
// makes it print them (clients that sent the token) and keep a connection
// that a directory's looser limits keep although the server's would close.
void swap_server_for_core(ResponseState* st, request_rec* r, bool core_prints) {
    const keepalive::Decision& d = st->decision;
    const server_rec* s = r->server;
    const int max_requests = d.max_remaining < 0 ? 0 : d.max_remaining + st->facts.responses_kept_before;
    const bool core_would_close =
        s->keep_alive_timeout <= 0 || (s->keep_alive_max != 0 && s->keep_alive_max - r->connection->keepalives <= 0);
    const bool prints_other_values =
        core_prints && (s->keep_alive_timeout != d.advertised_timeout_us || s->keep_alive_max != max_requests);
    if (!core_would_close && !prints_other_values) return;
    auto* printed = static_cast<server_rec*>(apr_pmemdup(r->pool, s, sizeof(server_rec)));
    printed->keep_alive_timeout = d.advertised_timeout_us;
    printed->keep_alive_max = max_requests;
    st->swap.apply(r, printed);
}

// The policy decides before core. `block_whole`: OBSERVE will get the header
// block whole, so the two fields can go straight into it (cheaper than
// httpd checking and writing them).
void prepare(ResponseState* st, request_rec* r, bool block_whole) {
    conn_rec* c = r->connection;
    // A new response for the same request (ap_die after an error bucket, an
    // ErrorDocument): undo what the module changed for the first one, but
    // never reopen a connection. Core, ap_discard_request_body() or
    // mod_reqtimeout may have closed it meanwhile because the request body
    // was not read to its end; keeping it would serve the rest as a request.
    const bool second_response = st->phase == Phase::PolicyDecided;
    const bool closed_by_module = second_response && st->decision.verdict == keepalive::Verdict::Close;
    const keepalive::CloseReason earlier_reason = st->decision.reason;
    if (second_response) st->swap.undo();
    st->phase = Phase::PolicyDecided;
    st->fields = FieldsPlacement::ByCore;
    bool disabled_by_condition = false;
    const ResponseConnection response_connection = response_connection_of(r);
    st->limits = enforced_limits(r);
    st->settings = settings_for(r, &disabled_by_condition);
    st->facts = gather_facts(r, response_connection, disabled_by_condition);
    if (st->settings.adaptive.enabled) {
        const AdaptivePressure pressure = adaptive_pressure(apr_time_now(), occupancy_sample_interval());
        st->facts.pressure_permille = pressure.combined;
        st->facts.shedding_pressure_permille = pressure.shedding;
    }
    if (drain_active()) apply_drain(&st->facts);
    decide_then_ask_if_stopping(st);
    if (closed_by_module && st->decision.reason == keepalive::CloseReason::MarkedClose) {
        st->decision.reason = earlier_reason;  // the module's own mark: report why it made it
    }
    if (st->decision.verdict == keepalive::Verdict::NotApplicable) return;

    drop_foreign_keepalive_headers(r, response_connection);

    if (!st->decision.keep()) {
        // Core counts the response that uses up the budget as one more kept
        // one (%k in the access log), but only on a connection not yet
        // marked to close: do what it would have done before marking it.
        if (st->decision.reason == keepalive::CloseReason::BudgetReached && c->keepalive != AP_CONN_CLOSE) {
            ++c->keepalives;
        }
        c->keepalive = AP_CONN_CLOSE;
        return;
    }

    // Core prints the Keep-Alive field itself when it finds the token (its
    // own way, see httpd_find_token), from r->server's values.
    swap_server_for_core(st, r, st->decision.httpd_sees_keep_alive);
    if (st->decision.httpd_sees_keep_alive) {
        // "KeepAliveHeader Never" to a client core prints Keep-Alive for:
        // a filter right after HTTP_HEADER takes the field out again.
        if (!st->decision.send_header) add_strip_filter(st, r);
    } else if (st->decision.send_header) {
        if (block_whole) {
            st->fields = FieldsPlacement::IntoBlock;
        } else {
            add_keep_alive_header(st, r);
        }
    }
}

}  // namespace

void decide_then_ask_if_stopping(ResponseState* st) {
    st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    // A stopping server closes whatever else holds: asking the MPM costs a
    // hook run, so only when the answer matters.
    if (st->decision.keep() && server_stopping()) {
        st->facts.server_stopping = true;
        st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    }
}

__attribute__((noinline)) void before_core(ConnectionState* cs, ap_filter_t* f, apr_bucket_brigade* bb) {
    request_rec* r = f->r;
    ResponseState* st = &cs->response;
    st->request = r;
    // A request the policy decided for once stays with the policy: its
    // error document must not reopen what the policy closed. Where core
    // decides alone an error bucket needs no care: the error document that
    // replaces this response comes through here again, and is seen afresh.
    if (st->phase != Phase::PolicyDecided && core_decides_alone(cs, f)) {
        st->phase = Phase::CoreDecides;
        // What core decides from, for OBSERVE to say why it closed: after
        // core, every closing response's Connection carries "close".
        st->marked_close_before = r->connection->keepalive == AP_CONN_CLOSE;
        st->response_connection = response_connection_of(r);
        // Only the module's Keep-Alive may reach the client (core replaces a
        // handler's only for clients that sent the token).
        drop_foreign_keepalive_headers(r, st->response_connection);
        return;
    }
    if (st->phase == Phase::CoreDecides) st->phase = Phase::Fresh;
    // Decide for the error document that replaces this response, not for it.
    if (!carries_error_or_eoc(bb)) prepare(st, r, block_reaches_observe(cs, f));
}

}  // namespace keepalive::httpd
