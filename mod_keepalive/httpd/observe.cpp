// KEEPALIVE_OBSERVE is a connection filter of the lowest connection type,
// added once per connection: the first of the connection's output chain,
// right after the requests' protocol filters (and ahead of TLS), so
// HTTP_HEADER passes it the header block it serialized before anything
// else. There it reads the verdict core applied and judges it once, for
// both ways through HTTP_HEADER (policy_path.cpp):
//  - where core decided alone and kept an HTTP/1.1 connection (the common
//    case), the verdict is recorded as core printed it, and a client
//    without the token gets the Keep-Alive fields core writes only for
//    clients that sent it;
//  - otherwise the policy's decision (made before core, or now from what
//    core decided from) is checked against core's verdict; a disagreement
//    is logged and what core did is recorded, as the client was told it. A
//    response core closed after all never carries the module's Keep-Alive.

#include "httpd/observe.h"

#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "core/wire_format.h"
#include "httpd/config.h"
#include "httpd/drain.h"
#include "httpd/header_takeover_24.h"
#include "httpd/shared_counters.h"
#include "httpd/policy_path.h"
#include "httpd/response_facts.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

constexpr const char kObserveFilter[] = "KEEPALIVE_OBSERVE";
constexpr const char kNote[] = "keepalive";

ap_filter_rec_t* observe_filter_handle;

__attribute__((noinline)) void trace_outcome(const request_rec* r, const keepalive::Decision& d, bool kept,
                                             const char* note) {
    if (kept) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "%s (idle %" APR_TIME_T_FMT " ms%s)", note,
                      apr_time_as_msec(d.idle_timeout_us), d.send_header ? "" : ", no header");
    } else {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "%s", note);
    }
}

// What the decision was, for the access log (%{keepalive}n), the trace log,
// the counters and the connection's end.
void record(request_rec* r, const keepalive::Decision& d, bool kept) {
    auto* note = static_cast<char(*)[keepalive::kOutcomeNoteSize]>(apr_palloc(r->pool, keepalive::kOutcomeNoteSize));
    keepalive::format_outcome_note(d, kept, *note);
    // In C++ httpd's log macros call the logger before checking the level:
    // check it here, so that a request not traced costs nothing.
    if (APLOGrtrace1(r)) trace_outcome(r, d, kept, *note);
    // mod_log_config reads notes from the request it logs: the first one by
    // default, the last with %>{...}n; internal redirects have their own.
    // Once per request: a second response to one (an error document) comes
    // only when no header block passed for the first, which was not recorded.
    for (request_rec* each = r; each; each = each->prev) apr_table_addn(each->notes, kNote, *note);

    const int slot = metrics_slot(r->server);
    count_response(slot, kept);
    if (kept) note_promised_idle_wait(d.idle_timeout_us);
    if (ConnectionState* cs = connection_state(r->connection)) {
        ++cs->requests;
        cs->last_kept = kept;
        cs->last_reason = d.reason;
        cs->metrics_slot = slot;
        cs->idle_since = r->request_time;
        cs->advertised_timeout_s = d.advertised_timeout_s;
        cs->last_server = r->server;
        const server_rec* timeout_source = r->server->keep_alive_timeout_set ? r->server : r->connection->base_server;
        cs->next_idle_timeout = d.idle_timeout_us != timeout_source->keep_alive_timeout ? d.idle_timeout_us : -1;
        cs->idle_end = IdleEnd::Waiting;
    }
}

__attribute__((noinline)) void log_unexpected_block(const request_rec* r) {
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "mod_keepalive: the header block does not end as HTTP_HEADER writes it; Keep-Alive not added");
}

// Where core decided alone, a response it closed, or kept as HTTP/1.0
// (downgrade-1.0, force-no-vary): what the policy decides from what core
// decided from, so that the log says why it closed.
void decide_from_core_inputs(ResponseState* st, request_rec* r, bool core_kept) {
    bool disabled_by_condition = false;
    st->limits = enforced_limits(r);
    st->settings = settings_for(r, &disabled_by_condition);
    st->facts = gather_facts(r, st->response_connection, disabled_by_condition);
    st->facts.connection_marked_close = st->marked_close_before;
    st->facts.responses_kept_before = keepalives_before(r, core_kept, st->marked_close_before);
    decide_then_ask_if_stopping(st);
    st->fields = FieldsPlacement::ByCore;
}

// The one judgement of core's verdict, for both ways through HTTP_HEADER:
// the decision to record, as the client was told it.
keepalive::Decision judge_core_verdict(ResponseState* st, request_rec* r, bool core_kept) {
    // Now that core has framed the body, the policy can judge an HTTP/1.0
    // response whose length was not known before.
    if (st->facts.framing == keepalive::BodyFraming::Unknown && is_http10(st->facts)) {
        st->facts.framing =
            body_is_delimited(r) ? keepalive::BodyFraming::Delimited : keepalive::BodyFraming::Undelimited;
        st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    }
    keepalive::Decision d = st->decision;
    if (d.keep() == core_kept) return d;
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "mod_keepalive: policy decided %s (%s) but core %s the connection",
                  d.keep() ? "keep" : "close", keepalive::reason_name(d.reason), core_kept ? "kept" : "closed");
    if (core_kept) return core_keep_decision(r);
    // Count what happened: core closed for a reason the policy missed.
    d.verdict = keepalive::Verdict::Close;
    d.reason = keepalive::CloseReason::MarkedClose;
    return d;
}

// Every response but the common case of observe_header_block().
__attribute__((noinline)) void judge_and_record(ResponseState* st, request_rec* r, apr_bucket_brigade* block,
                                                bool core_decided_alone) {
    const bool core_kept = r->connection->keepalive == AP_CONN_KEEPALIVE;
    if (core_decided_alone) {
        decide_from_core_inputs(st, r, core_kept);
    } else {
        st->swap.undo();
    }
    if (st->decision.verdict == keepalive::Verdict::NotApplicable) return;
    const keepalive::Decision d = judge_core_verdict(st, r, core_kept);
    if (core_kept && d.keep() && st->fields == FieldsPlacement::IntoBlock &&
        !insert_keep_alive_fields(r->connection, block, d)) {
        log_unexpected_block(r);
    }
    record(r, d, core_kept);
    if (!core_kept && st->fields == FieldsPlacement::IntoHeaders) {
        // Only after a disagreement just logged. A filter between
        // HTTP_HEADER and this one (mod_ratelimit's) may have split the
        // block: a partial one is left alone rather than cut wrong.
        strip_keep_alive_from_block(r, block, true);
    }
}

// The header block of the response `was` describes has reached OBSERVE.
void observe_header_block(ResponseState* st, Phase was, apr_bucket_brigade* block) {
    request_rec* r = st->request;
    conn_rec* c = r->connection;
    // Core decided alone and kept an HTTP/1.1 connection: recorded as core
    // printed it. (Under downgrade-1.0 or force-no-vary core answered as
    // HTTP/1.0; those are judged.)
    if (was == Phase::CoreDecides && c->keepalive == AP_CONN_KEEPALIVE && r->proto_num == HTTP_VERSION(1, 1)) {
        const keepalive::Decision d = core_keep_decision(r);
        if (!has_keep_alive_field(r->headers_out) && !insert_keep_alive_fields(c, block, d)) log_unexpected_block(r);
        record(r, d, true);
        return;
    }
    judge_and_record(st, r, block, was == Phase::CoreDecides);
}

apr_status_t observe_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    ResponseState* st = &static_cast<ConnectionState*>(f->ctx)->response;
    const Phase was = st->phase;
    if ((was == Phase::CoreDecides || was == Phase::PolicyDecided) && !APR_BRIGADE_EMPTY(bb)) {
        const apr_bucket* first = APR_BRIGADE_FIRST(bb);
        if (!APR_BUCKET_IS_METADATA(first)) {
            // Data after HTTP_HEADER has run: the header block, so core has decided.
            st->phase = Phase::Recorded;
            observe_header_block(st, was, bb);
        } else if (AP_BUCKET_IS_EOR(first)) {
            // The request ends (its pool goes with this bucket) without a
            // header block having passed: nothing to record.
            st->phase = Phase::Recorded;
            st->swap.undo();
        }
    }
    return ap_pass_brigade(f->next, bb);
}

}  // namespace

void register_observe_hooks() {
    // The lowest connection type: ahead of every other connection filter.
    observe_filter_handle = ap_register_output_filter(kObserveFilter, observe_filter, nullptr, AP_FTYPE_CONNECTION);
}

ap_filter_t* add_observe_filter(ConnectionState* cs, conn_rec* c) {
    return ap_add_output_filter_handle(observe_filter_handle, cs, nullptr, c);
}

}  // namespace keepalive::httpd
