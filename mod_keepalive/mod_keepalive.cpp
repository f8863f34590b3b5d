// mod_keepalive: the Apache httpd adapter's hooks and filters.
//
// With apache_config.cpp, the only code that includes httpd and APR headers.
// It turns a response into keepalive::ResponseFacts, asks the policy core
// (ka_policy.h) for a decision, and makes httpd carry it out.
//
// How it acts, and why this way. Core decides persistence in ap_set_keepalive(),
// called from the HTTP_HEADER filter right before the header block is
// serialized; nothing runs in between, and no hook is offered. So the module
// registers its own function under the name HTTP_HEADER (httpd's filter
// registry gives a name to the last module that registers it, and
// http_core registers first): header_filter() runs where core's would, does
// its work and hands the brigade to core's ap_http_header_filter(), the
// public function behind that name. No filter is added to any request.
//
//   header_filter, before core decides, for each response:
//     - core decides alone when the policy would decide as core does: an
//       HTTP/1.1 request, none of the module's directives in effect for it
//       (core's KeepAliveTimeout and MaxKeepAliveRequests are), core prints
//       the timeout the MPM enforces, and the header block reaches OBSERVE
//       in one piece. The module only drops Keep-Alive values a handler set.
//     - otherwise the policy decides now, and the module arranges for core
//       to carry the decision out:
//         close -> c->keepalive = AP_CONN_CLOSE, core writes "Connection: close";
//         keep  -> when the request carried the keep-alive token, core writes
//                  "Keep-Alive: timeout=T, max=M" itself from r->server's
//                  values: when the decision's timeout or budget differ from
//                  them, the module swaps r->server for a request-pool copy
//                  that carries them, for the duration of HTTP_HEADER.
//                  Otherwise (HTTP/1.1 clients, which are persistent without
//                  the token) the same two fields core would write go into
//                  the block OBSERVE sees, or, when a filter between would
//                  cut it into pieces, into the response headers.
//   KEEPALIVE_OBSERVE  first connection filter, added once per connection, so
//       after every request's protocol filters: sees the header block
//       HTTP_HEADER serialized before anything else. It reads the verdict
//       core applied and records it (the note, the counters, the idle
//       timeout to enforce next). On a kept response to a client without
//       the token it writes the two fields into the block. Where the policy
//       decided, it puts r->server back and checks that core did what the
//       policy said; on a response core closed after all, it takes the
//       module's Keep-Alive back out of the block, so a response that
//       closes never carries one.
//
// The idle wait. Prefork and worker wait for the next request with a socket
// timeout, which the create_request hook sets, per connection, to what the
// previous response decided. Event waits in per-vhost queues fixed at start-up
// (server_rec's keep_alive_timeout); the policy never advertises more than
// that queue enforces. How that wait ended (the client closed, or the
// timeout) is read from the request core then fails to read.
//
// Cost. This runs on every request of every child, so the request path does
// no allocation beyond a few pool bytes, formats without printf, asks the MPM
// and the tables only what can change the verdict, and keeps the per-response
// state inside the connection's (bench/cost measures it with callgrind).

#include <cstring>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mod_core.h"
#include "apr_strings.h"

#include "apache_config.h"
#include "apache_load.h"
#include "apache_metrics.h"
#include "mod_status.h"
#include "ka_policy.h"
#include "ka_tokens.h"

#ifndef MOD_KEEPALIVE_VERSION
#error "MOD_KEEPALIVE_VERSION must be defined by the build (see Makefile)"
#endif

APLOG_USE_MODULE(keepalive);

namespace {

namespace cfg = keepalive::apache;

constexpr const char kHeaderFilter[] = "HTTP_HEADER";
constexpr const char kObserveFilter[] = "KEEPALIVE_OBSERVE";
constexpr const char kStripFilter[] = "KEEPALIVE_STRIP";
constexpr const char kNote[] = "keepalive";

ap_filter_rec_t* header_filter_handle;
ap_filter_rec_t* observe_filter_handle;
ap_filter_rec_t* strip_filter_handle;

// Whether the MPM waits for the next request in the worker (prefork, worker),
// where the socket timeout can be set per connection; set in post_config.
bool mpm_waits_in_worker = true;

// Whether the connection waits for its next request after a response, and
// how that wait ended, as core's read of it saw it (NotWaiting: before the
// first response).
enum class IdleEnd { NotWaiting, Waiting, TimedOut, ClientGone };

// The response's Connection fields, as handlers and filters set them.
struct ResponseConnection {
    const char* headers_out = nullptr;
    const char* err_headers_out = nullptr;
};

// Per response, shared by header_filter and OBSERVE. HTTP/1.x serves one
// request at a time, so it lives in the connection's state and is reset for
// each main request; internal redirects and ErrorDocument share their main
// request's.
struct ResponseState {
    request_rec* request = nullptr;  // the request header_filter saw
    keepalive::ConnectionLimits limits;
    keepalive::Settings settings;
    keepalive::ResponseFacts facts;
    keepalive::Decision decision;
    bool prepared = false;     // the policy decided before core
    bool core_alone = false;   // core decided alone; OBSERVE reports it
    bool observed = false;
    bool added_header = false;  // the module put Keep-Alive into headers_out itself
    bool insert_fields = false;  // OBSERVE writes Keep-Alive into the block if core keeps

    // Where core decides alone, as they were before it did.
    bool marked_close_before = false;  // c->keepalive was AP_CONN_CLOSE
    ResponseConnection response_connection;

    // What prepare() changed and OBSERVE puts back.
    request_rec* changed_request = nullptr;
    server_rec* original_server = nullptr;  // set when r->server was swapped

    // Everything a new response reads before writing is reset here; the
    // rest is overwritten by prepare().
    void reset() {
        forget_request();
        observed = added_header = insert_fields = false;
        original_server = nullptr;
    }
    // The request's pool is going: nothing may point into it any more.
    void forget_request() {
        request = nullptr;
        changed_request = nullptr;
        prepared = core_alone = false;
        response_connection = {};
    }
};

// Per connection, created once from the connection pool.
struct ConnectionState {
    conn_rec* connection = nullptr;
    ap_filter_t* observe_filter = nullptr;  // this connection's OBSERVE
    apr_time_t accepted = 0;
    // The idle timeout the last kept response decided, when it is not the one
    // core's own loop sets (r->server's, or the base server's); else -1.
    apr_interval_time_t next_idle_timeout = -1;
    std::uint64_t requests = 0;                  // responses the module decided on
    bool last_kept = false;
    keepalive::CloseReason last_reason = keepalive::CloseReason::None;
    int metrics_slot = 0;  // the virtual host of the last request
    IdleEnd idle_end = IdleEnd::NotWaiting;
    ResponseState response;  // of the request being served
};

ConnectionState* connection_state(const conn_rec* c) {
    return static_cast<ConnectionState*>(ap_get_module_config(c->conn_config, &keepalive_module));
}

// Core's values for the request's virtual host, as the MPM enforces them.
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

// apr_table_get() hashes the key before it finds a table empty; most
// requests' subprocess_env and err_headers_out are.
const char* table_get(const apr_table_t* table, const char* key) {
    return apr_table_elts(table)->nelts ? apr_table_get(table, key) : nullptr;
}

const char* first_header(const request_rec* r, const char* name) {
    const char* value = table_get(r->err_headers_out, name);
    return value ? value : apr_table_get(r->headers_out, name);
}

bool body_is_delimited(const request_rec* r) {
    return r->header_only || AP_STATUS_IS_HEADER_ONLY(r->status) || r->chunked ||
           first_header(r, "Content-Length") != nullptr ||
           ap_is_chunked(r->pool, first_header(r, "Transfer-Encoding"));
}

bool is_http10(const keepalive::ResponseFacts& f) { return f.http_major == 1 && f.http_minor == 0; }

keepalive::ResponseFacts gather_facts(const request_rec* r, const ResponseConnection& response_connection,
                                      bool disabled_by_condition) {
    const conn_rec* c = r->connection;
    keepalive::ResponseFacts f;
    // The same downgrade core's basic_http_header_check() applies just before
    // it decides.
    int proto = r->proto_num;
    // force-no-vary: HTTP_HEADER turns the response into HTTP/1.0 and sets
    // force-response-1.0 itself, after this filter has run.
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
    if (const ConnectionState* cs = connection_state(c)) f.connection_age_us = r->request_time - cs->accepted;
    f.forward_proxy = r->proxyreq == PROXYREQ_PROXY;
    f.disabled_by_condition = disabled_by_condition;
    // Asked of the MPM only when it can change the verdict (see prepare()).
    f.server_stopping = false;
    return f;
}

// Handlers, CGI scripts, proxied backends and mod_headers can all put their
// own Keep-Alive and "Connection: keep-alive" into the response. Only the
// module's decision may reach the client, so theirs go; other Connection
// tokens ("close", "Upgrade") stay.
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

// The response's Connection fields, as handlers and filters left them.
// (apr_table_get() is cheap for a field that is not there, the usual case.)
ResponseConnection response_connection_of(const request_rec* r) {
    return {apr_table_get(r->headers_out, "Connection"), table_get(r->err_headers_out, "Connection")};
}

void drop_foreign_keepalive_headers(request_rec* r, const ResponseConnection& connection) {
    drop_foreign_keepalive_headers(r, r->headers_out, connection.headers_out);
    drop_foreign_keepalive_headers(r, r->err_headers_out, connection.err_headers_out);
}

// A connection core kept: the decision it carried out, in the policy's terms.
keepalive::Decision core_keep_decision(const request_rec* r) {
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

void undo_preparation(ResponseState* st) {
    request_rec* r = st->changed_request;
    if (!r) return;
    if (st->original_server) {
        r->server = st->original_server;
        st->original_server = nullptr;
    }
    st->changed_request = nullptr;
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
    st->added_header = true;
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
    st->original_server = r->server;
    r->server = printed;
}

// `block_reaches_observe`: OBSERVE will get the header block whole, so the two
// fields can go straight into it (cheaper than httpd checking and writing them).
void prepare(ResponseState* st, request_rec* r, bool block_reaches_observe) {
    conn_rec* c = r->connection;
    // A new response for the same request (ap_die after an error bucket, an
    // ErrorDocument): undo what the module changed for the first one, but
    // never reopen a connection. Core, ap_discard_request_body() or
    // mod_reqtimeout may have closed it meanwhile because the request body
    // was not read to its end; keeping it would serve the rest as a request.
    const bool closed_by_module = st->prepared && st->decision.verdict == keepalive::Verdict::Close;
    const keepalive::CloseReason earlier_reason = st->decision.reason;
    if (st->prepared) undo_preparation(st);
    st->prepared = true;
    st->added_header = st->insert_fields = false;
    bool disabled_by_condition = false;
    const ResponseConnection response_connection = response_connection_of(r);
    st->limits = enforced_limits(r);
    st->settings = cfg::settings_for(r, &disabled_by_condition);
    st->facts = gather_facts(r, response_connection, disabled_by_condition);
    if (st->settings.adaptive.enabled) {
        st->facts.occupancy_permille = cfg::worker_occupancy(apr_time_now(), cfg::occupancy_sample_interval());
    }
    st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    // A stopping server closes whatever else holds: asking the MPM costs a
    // hook run, so only when the answer matters.
    if (st->decision.keep() && server_stopping()) {
        st->facts.server_stopping = true;
        st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    }
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
    st->changed_request = r;
    swap_server_for_core(st, r, st->decision.httpd_sees_keep_alive);
    if (st->decision.httpd_sees_keep_alive) {
        // "KeepAliveHeader Never" to a client core prints Keep-Alive for:
        // a filter right after HTTP_HEADER takes the field out again.
        if (!st->decision.send_header) ap_add_output_filter_handle(strip_filter_handle, st, r, c);
    } else if (st->decision.send_header) {
        if (block_reaches_observe) {
            st->insert_fields = true;
        } else {
            add_keep_alive_header(st, r);
        }
    }
}

bool carries_error_or_eoc(apr_bucket_brigade* bb) {
    for (apr_bucket* b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb); b = APR_BUCKET_NEXT(b)) {
        if (AP_BUCKET_IS_ERROR(b) || AP_BUCKET_IS_EOC(b)) return true;
    }
    return false;
}

// Takes the Keep-Alive field (and, with connection_too, the keep-alive
// element of Connection) back out of the header block core serialized:
// "KeepAliveHeader Never" on a response whose client sent the token, or a
// response the module prepared as kept that core closed after all.
void strip_keep_alive_from_block(request_rec* r, apr_bucket_brigade* bb, bool connection_too) {
    apr_bucket* b = APR_BRIGADE_FIRST(bb);
    while (b != APR_BRIGADE_SENTINEL(bb) && !APR_BUCKET_IS_METADATA(b)) b = APR_BUCKET_NEXT(b);
    apr_bucket_brigade* rest = apr_brigade_split_ex(bb, b, nullptr);
    char* block = nullptr;
    apr_size_t length = 0;
    if (apr_brigade_pflatten(bb, &block, &length, r->pool) == APR_SUCCESS) {
        const std::string stripped = keepalive::strip_keep_alive_fields({block, length}, connection_too);
        if (stripped.size() != length) {
            apr_brigade_cleanup(bb);
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(apr_pstrmemdup(r->pool, stripped.data(), stripped.size()),
                                                               stripped.size(), r->pool, r->connection->bucket_alloc));
        }
    }
    APR_BRIGADE_CONCAT(bb, rest);
}

// What the decision was, for the access log (%{keepalive}n), the trace log,
// the counters and the connection's end.
__attribute__((noinline)) void trace_outcome(const request_rec* r, const keepalive::Decision& d, bool kept,
                                             const char* note) {
    if (kept) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "%s (idle %" APR_TIME_T_FMT " ms%s)", note,
                      apr_time_as_msec(d.idle_timeout_us), d.send_header ? "" : ", no header");
    } else {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "%s", note);
    }
}

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

    const int slot = cfg::metrics_slot(r->server);
    cfg::count_response(slot, kept);
    if (ConnectionState* cs = connection_state(r->connection)) {
        ++cs->requests;
        cs->last_kept = kept;
        cs->last_reason = d.reason;
        cs->metrics_slot = slot;
        const server_rec* timeout_source = r->server->keep_alive_timeout_set ? r->server : r->connection->base_server;
        cs->next_idle_timeout = d.idle_timeout_us != timeout_source->keep_alive_timeout ? d.idle_timeout_us : -1;
        cs->idle_end = IdleEnd::Waiting;
    }
}

// "Keep-Alive" in any case. Letters compare by their lower-case bit; the
// first byte that differs, a NUL included, ends the comparison.
bool is_keep_alive_name(const char* n) {
    return (n[0] | 0x20) == 'k' && (n[1] | 0x20) == 'e' && (n[2] | 0x20) == 'e' && (n[3] | 0x20) == 'p' &&
           n[4] == '-' && (n[5] | 0x20) == 'a' && (n[6] | 0x20) == 'l' && (n[7] | 0x20) == 'i' &&
           (n[8] | 0x20) == 'v' && (n[9] | 0x20) == 'e' && n[10] == '\0';
}

// Whether the response headers have a Keep-Alive field: core's, after it
// kept the connection of a client that sent the token. apr_table_get() would
// say the same at several times the cost (its strcasecmp()); the field is
// one of the last core added.
bool has_keep_alive_field(const apr_table_t* headers) {
    const apr_array_header_t* fields = apr_table_elts(headers);
    const auto* entries = reinterpret_cast<const apr_table_entry_t*>(fields->elts);
    for (int i = fields->nelts - 1; i >= 0; --i) {
        const char* key = entries[i].key;
        if (key && is_keep_alive_name(key)) return true;
    }
    return false;
}

// Writes "Keep-Alive: ..." and "Connection: Keep-Alive" into a serialized
// header block, before its final CRLF. The block is HTTP_HEADER's own
// brigade (block_reaches_observe() made sure): its data, then at most an EOS.
bool insert_keep_alive_fields(conn_rec* c, apr_bucket_brigade* block, const keepalive::Decision& d) {
    apr_bucket* last = nullptr;
    for (apr_bucket* b = APR_BRIGADE_FIRST(block); b != APR_BRIGADE_SENTINEL(block) && !APR_BUCKET_IS_METADATA(b);
         b = APR_BUCKET_NEXT(b)) {
        last = b;
    }
    const char* data = nullptr;
    apr_size_t length = 0;
    if (!last || apr_bucket_read(last, &data, &length, APR_BLOCK_READ) != APR_SUCCESS || length < 2 ||
        std::memcmp(data + length - 2, "\r\n", 2) != 0) {
        return false;
    }
    using Fields = char[keepalive::kKeepAliveFieldsSize];
    if (APR_BUCKET_IS_HEAP(last)) {
        // Core wrote the block into one heap bucket with room to spare: grow
        // it in place, as apr_brigade_write() itself grows a brigade's last
        // heap bucket, rather than split it around a new one. The fields go
        // over the final CRLF, which follows them again (the buffer's size
        // leaves room for both).
        auto* heap = static_cast<apr_bucket_heap*>(last->data);
        char* end = heap->base + last->start + length;
        if (heap->refcount.refcount == 1 &&
            static_cast<apr_size_t>(heap->base + heap->alloc_len - end) >= sizeof(Fields)) {
            const std::size_t size = keepalive::format_keep_alive_fields(d, *reinterpret_cast<Fields*>(end - 2));
            std::memcpy(end - 2 + size, "\r\n", 2);
            last->length += size;
            return true;
        }
    }
    Fields fields;
    const std::size_t size = keepalive::format_keep_alive_fields(d, fields);
    apr_bucket* inserted = apr_bucket_heap_create(fields, size, nullptr, c->bucket_alloc);
    if (length > 2) {
        apr_bucket_split(last, length - 2);
        APR_BUCKET_INSERT_AFTER(last, inserted);
    } else {
        APR_BUCKET_INSERT_BEFORE(last, inserted);
    }
    return true;
}

__attribute__((noinline)) void log_unexpected_block(const request_rec* r) {
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "mod_keepalive: the header block does not end as HTTP_HEADER writes it; Keep-Alive not added");
}

__attribute__((noinline)) void observe(ResponseState* st, request_rec* r, apr_bucket_brigade* header_block) {
    conn_rec* c = r->connection;
    const bool core_kept = c->keepalive == AP_CONN_KEEPALIVE;
    undo_preparation(st);
    if (!st->prepared || st->decision.verdict == keepalive::Verdict::NotApplicable) return;

    // Now that core has framed the body, the policy can judge an HTTP/1.0
    // response whose length was not known before.
    if (st->facts.framing == keepalive::BodyFraming::Unknown && is_http10(st->facts)) {
        st->facts.framing =
            body_is_delimited(r) ? keepalive::BodyFraming::Delimited : keepalive::BodyFraming::Undelimited;
        st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    }
    const keepalive::Decision& d = st->decision;
    if (d.keep() != core_kept) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "mod_keepalive: policy decided %s (%s) but core %s the connection",
                      d.keep() ? "keep" : "close", keepalive::reason_name(d.reason), core_kept ? "kept" : "closed");
        if (core_kept) {
            // Record what core did, as the client was told it.
            st->decision = core_keep_decision(r);
        } else {
            // Count what happened: core closed for a reason the policy missed.
            st->decision.verdict = keepalive::Verdict::Close;
            st->decision.reason = keepalive::CloseReason::MarkedClose;
        }
    }
    if (core_kept && d.keep() && st->insert_fields && !insert_keep_alive_fields(c, header_block, d)) {
        log_unexpected_block(r);
    }
    record(r, d, core_kept);
    if (!core_kept && st->added_header) {
        // Only after a disagreement just logged. A filter between
        // HTTP_HEADER and this one (mod_ratelimit's) may have split the
        // block: a partial one is left alone rather than cut wrong.
        strip_keep_alive_from_block(r, header_block, true);
    }
}


// The keep-alive responses before this one, from c->keepalives after core
// decided: it counts a kept response, and also the response that closes
// because the budget is used up (then keepalives was MaxKeepAliveRequests).
int keepalives_before(const request_rec* r, bool kept, bool marked_close_before) {
    const int count = r->connection->keepalives;
    const int max = r->server->keep_alive_max;
    if (kept) return count - 1;
    return !marked_close_before && max > 0 && count == max + 1 ? max : count;
}

// Where core decided alone, a response it closed, or kept as HTTP/1.0
// (downgrade-1.0, force-no-vary): the policy judges it from what core
// decided from, so that the log says why it closed, and a disagreement is
// reported as where the policy decided first.
__attribute__((noinline)) void judge_core_decision(ResponseState* st, request_rec* r, apr_bucket_brigade* header_block,
                                                   bool core_kept) {
    bool disabled_by_condition = false;
    st->limits = enforced_limits(r);
    st->settings = cfg::settings_for(r, &disabled_by_condition);
    st->facts = gather_facts(r, st->response_connection, disabled_by_condition);
    st->facts.connection_marked_close = st->marked_close_before;
    st->facts.responses_kept_before = keepalives_before(r, core_kept, st->marked_close_before);
    st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    if (st->decision.keep() && server_stopping()) {
        st->facts.server_stopping = true;
        st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    }
    st->prepared = true;
    observe(st, r, header_block);
}

// Core decided alone (core_decides_alone()). A kept response, the common
// case, is recorded as core printed it, and gets the Keep-Alive field core
// writes only for clients that sent the token.
void observe_core(ResponseState* st, request_rec* r, apr_bucket_brigade* header_block) {
    conn_rec* c = r->connection;
    const bool core_kept = c->keepalive == AP_CONN_KEEPALIVE;
    // Under downgrade-1.0 or force-no-vary core answered as HTTP/1.0.
    if (core_kept && r->proto_num == HTTP_VERSION(1, 1)) {
        const keepalive::Decision d = core_keep_decision(r);
        if (!has_keep_alive_field(r->headers_out) && !insert_keep_alive_fields(c, header_block, d)) {
            log_unexpected_block(r);
        }
        record(r, d, true);
        return;
    }
    judge_core_decision(st, r, header_block, core_kept);
}

// Whether the header block HTTP_HEADER (`f`) writes reaches OBSERVE whole: only
// HTTP_OUTERROR, which passes data through, lies between (mod_ratelimit, for
// one, would cut it into pieces).
bool block_reaches_observe(const ConnectionState* cs, const ap_filter_t* f) {
    const ap_filter_t* next = f->next;
    if (next && next->frec == ap_http_outerror_filter_handle) next = next->next;
    return next == cs->observe_filter;
}

// Whether core, left alone, decides what the policy would, prints what the
// MPM enforces, and OBSERVE gets the header block whole: then the module
// need not decide before core, only report after it (observe_core()).
//  - HTTP/1.1, and not made HTTP/1.0 by downgrade-1.0 or force-no-vary: for
//    it the policy's rules are core's, token matching included
//    (ka_policy.cpp); HTTP/1.0 has the module's own rules (KeepAliveHTTP10,
//    forward proxies).
//  - None of the module's directives applies (cfg::policy_is_cores);
//    KeepAliveIdleTimeout and KeepAliveMaxRequests at server level are
//    core's own values and do not count.
//  - The timeout core prints, r->server's, is the one enforced: a name-based
//    vhost without its own KeepAliveTimeout is held to the base server's.
//  - The block reaches OBSERVE whole, so that OBSERVE can write into it.
bool core_decides_alone(const ConnectionState* cs, const ap_filter_t* f) {
    const request_rec* r = f->r;
    const server_rec* s = r->server;
    if (r->proto_num != HTTP_VERSION(1, 1)) return false;
    // Core turns these into HTTP/1.0 responses, where the module's own rules
    // (KeepAliveHTTP10) apply.
    if (table_get(r->subprocess_env, "downgrade-1.0") || table_get(r->subprocess_env, "force-no-vary")) return false;
    if (!s->keep_alive_timeout_set && s->keep_alive_timeout != r->connection->base_server->keep_alive_timeout) {
        return false;
    }
    return block_reaches_observe(cs, f) && cfg::policy_is_cores(r);
}

// Just before core decides, for each response (an error document after an
// error bucket is a second one).
__attribute__((noinline)) void before_core(ConnectionState* cs, ap_filter_t* f, apr_bucket_brigade* bb) {
    request_rec* r = f->r;
    ResponseState* st = &cs->response;
    st->request = r;
    // A request the policy decided for once stays with the policy: its
    // error document must not reopen what the policy closed. Where core
    // decides alone an error bucket needs no care: the error document that
    // replaces this response comes through here again, and is seen afresh.
    if (!st->prepared && core_decides_alone(cs, f)) {
        st->core_alone = true;
        // What core decides from, for OBSERVE to say why it closed: after
        // core, every closing response's Connection carries "close".
        st->marked_close_before = r->connection->keepalive == AP_CONN_CLOSE;
        st->response_connection = response_connection_of(r);
        // Only the module's Keep-Alive may reach the client (core replaces a
        // handler's only for clients that sent the token).
        drop_foreign_keepalive_headers(r, st->response_connection);
        return;
    }
    st->core_alone = false;
    // An error bucket makes core discard this response and send an error
    // document through this filter again: decide for that one.
    if (!carries_error_or_eoc(bb)) prepare(st, r, block_reaches_observe(cs, f));
}

// Registered as HTTP_HEADER (see the top of this file): runs in core's
// filter's place, before it, on every brigade that reaches it.
apr_status_t header_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    if (ConnectionState* cs = connection_state(f->r->connection)) {
        // Core writes the header block on an empty brigade too (mod_ext_filter
        // passes one when its command has no output yet).
        if (!cs->response.observed) before_core(cs, f, bb);
    }
    return ap_http_header_filter(f, bb);
}

// KEEPALIVE_STRIP, added by prepare() for "KeepAliveHeader Never" on a kept
// response to a client that sent the token (core then prints Keep-Alive).
// A protocol filter right after HTTP_HEADER, which passes it the whole
// header block in one brigade.
apr_status_t strip_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    if (APR_BRIGADE_EMPTY(bb)) return ap_pass_brigade(f->next, bb);
    if (f->r->connection->keepalive == AP_CONN_KEEPALIVE) strip_keep_alive_from_block(f->r, bb, false);
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

// A connection filter, added once per connection: the first of the
// connection's output chain, right after the requests' own filters, so
// HTTP_HEADER passes it the header block it serialized before anything else.
apr_status_t observe_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    auto* st = &static_cast<ConnectionState*>(f->ctx)->response;
    if (!st->observed && (st->prepared || st->core_alone) && !APR_BRIGADE_EMPTY(bb)) {
        const apr_bucket* first = APR_BRIGADE_FIRST(bb);
        if (!APR_BUCKET_IS_METADATA(first)) {
            // Data after header_filter has run: the header block, so core has decided.
            st->observed = true;
            if (st->core_alone) {
                observe_core(st, st->request, bb);
            } else {
                observe(st, st->request, bb);
            }
        } else if (AP_BUCKET_IS_EOR(first)) {
            // The request ends (its pool goes with this bucket) without a
            // header block having passed: nothing to observe.
            st->observed = true;
            undo_preparation(st);
        }
    }
    return ap_pass_brigade(f->next, bb);
}

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

// A new request on the connection: the per-response state starts afresh.
int begin_request(request_rec* r) {
    ConnectionState* cs = connection_state(r->connection);
    if (!cs) return DECLINED;  // HTTP/2 streams, mod_proxy's backend connections
    ResponseState* st = &cs->response;
    if (!r->main && r->prev) {
        // An internal redirect (ErrorDocument after ap_die in BYTERANGE or
        // HTTP_HEADER) copies r->server: give the new request the real one.
        if (st->original_server && st->changed_request && r->server == st->changed_request->server) {
            r->server = st->original_server;
        }
        undo_preparation(st);
        // Its response is judged afresh when it reaches HTTP_HEADER; until
        // then, data reaching OBSERVE (an interim 103 a proxied error
        // document relays) is not the header block of the first response.
        st->core_alone = false;
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

apr_status_t count_connection_end(void* data) {
    const auto* cs = static_cast<const ConnectionState*>(data);
    if (cs->requests > 0) cfg::count_connection_end(cs->metrics_slot, end_reason(*cs), cs->requests);
    return APR_SUCCESS;
}

int track_connection(conn_rec* c, void*) {
    // HTTP/2 streams and mod_proxy's backend connections: nothing to decide.
    if (c->master || c->outgoing) return DECLINED;
    auto* cs = new (apr_palloc(c->pool, sizeof(ConnectionState))) ConnectionState();
    cs->connection = c;
    cs->accepted = apr_time_now();
    ap_set_module_config(c->conn_config, &keepalive_module, cs);
    cs->observe_filter = ap_add_output_filter_handle(observe_filter_handle, cs, nullptr, c);
    apr_pool_cleanup_register(c->pool, cs, count_connection_end, apr_pool_cleanup_null);
    return DECLINED;
}

// What held the name HTTP_HEADER when the module registered it: core's
// ap_http_header_filter, unless a module loaded earlier had taken it over.
ap_out_filter_func displaced_header_filter = nullptr;

// Runs at start-up and for "apache2 -t": the module acts through
// HTTP_HEADER, so it must be the one holding that name, in place of core's.
int check_config(apr_pool_t* pconf, apr_pool_t* plog, apr_pool_t* ptemp, server_rec* s) {
    const char* problem = nullptr;
    if (displaced_header_filter && displaced_header_filter != ap_http_header_filter &&
        displaced_header_filter != header_filter) {
        problem = "a module loaded before mod_keepalive had already taken over the HTTP_HEADER filter";
    } else if (ap_http_header_filter_handle != header_filter_handle ||
               header_filter_handle->filter_func.out_func != header_filter) {
        problem = "a module loaded after mod_keepalive has taken over the HTTP_HEADER filter";
    }
    if (problem) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, nullptr,
                     "mod_keepalive: %s; mod_keepalive cannot act on responses alongside it", problem);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return cfg::check_config(pconf, plog, ptemp, s);
}

// Adds "mod_keepalive/VERSION" to the Server banner; httpd shows module
// components only with "ServerTokens Full", so the admin decides.
int post_config(apr_pool_t* pconf, apr_pool_t*, apr_pool_t* ptemp, server_rec* s) {
    int async = 0;
    mpm_waits_in_worker = !(ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) == APR_SUCCESS && async);
    ap_add_version_component(pconf, "mod_keepalive/" MOD_KEEPALIVE_VERSION);
    return cfg::metrics_post_config(pconf, ptemp, s);
}

void register_hooks(apr_pool_t*) {
    ap_hook_check_config(check_config, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_child_init(cfg::load_child_init, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(track_connection, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_create_request(begin_request, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_handler(cfg::metrics_handler, nullptr, nullptr, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, cfg::metrics_status_section, nullptr, nullptr, APR_HOOK_MIDDLE);
    // Replaces the function http_core registered under this name, in the
    // record http_core's ap_http_header_filter_handle points to, so every
    // request's HTTP_HEADER runs header_filter (which calls core's). Modules
    // register in load order, http_core (built in) first.
    if (const ap_filter_rec_t* existing = ap_get_output_filter_handle(kHeaderFilter)) {
        displaced_header_filter = existing->filter_func.out_func;
    }
    header_filter_handle = ap_register_output_filter(kHeaderFilter, header_filter, nullptr, AP_FTYPE_PROTOCOL);
    strip_filter_handle = ap_register_output_filter(kStripFilter, strip_filter, nullptr, AP_FTYPE_PROTOCOL);
    // The lowest connection type: ahead of every other connection filter
    // (TLS among them), right after the requests' protocol filters.
    observe_filter_handle = ap_register_output_filter(kObserveFilter, observe_filter, nullptr, AP_FTYPE_CONNECTION);
}

}  // namespace

extern "C" {
__attribute__((visibility("default"))) module AP_MODULE_DECLARE_DATA keepalive_module = {
    STANDARD20_MODULE_STUFF,
    cfg::create_dir_config,
    cfg::merge_dir_config,
    cfg::create_server_config,
    cfg::merge_server_config,
    cfg::directives,
    register_hooks,
    // Every virtual host gets its own server config, even without a directive
    // of this module: it carries the host's counter block (apache_metrics).
    AP_MODULE_FLAG_ALWAYS_MERGE,
};
}
