// mod_keepalive: the Apache httpd adapter's hooks and filters.
//
// With apache_config.cpp, the only code that includes httpd and APR headers.
// It turns a response into keepalive::ResponseFacts, asks the policy core
// (ka_policy.h) for a decision, and makes httpd carry it out.
//
// How it acts, and why this way. Core decides persistence in ap_set_keepalive(),
// called from the HTTP_HEADER filter right before the header block is
// serialized; nothing runs in between. So the module brackets that filter:
//
//   KEEPALIVE_PREPARE  first protocol filter, runs before HTTP_HEADER
//       decides, removes Keep-Alive values that handlers or mod_headers set,
//       and arranges for core to carry the decision out:
//         close -> c->keepalive = AP_CONN_CLOSE, core writes "Connection: close";
//         keep  -> core writes "Keep-Alive: timeout=T, max=M" from r->server's
//                  values, and only when the request carried the keep-alive
//                  token. For the duration of HTTP_HEADER the module adds that
//                  token to the request's Connection header (HTTP/1.1 is
//                  persistent either way; the token only changes what core
//                  prints) and, when the decision's timeout or budget differ
//                  from r->server's, swaps r->server for a request-pool copy
//                  that carries them.
//   KEEPALIVE_OBSERVE  after HTTP_HEADER, sees the header block first: reads
//       the verdict core applied, undoes both changes, checks that the policy
//       predicted the verdict, and remembers the idle timeout to enforce.
//
// Because core itself writes the header only when it keeps the connection,
// a response that closes can never carry a Keep-Alive header.
//
// The idle wait. Prefork and worker wait for the next request with a socket
// timeout, which the pre_read_request hook sets, per connection, to what the
// previous response decided. Event waits in per-vhost queues fixed at start-up
// (server_rec's keep_alive_timeout); the policy never advertises more than
// that queue enforces.

#include <cstring>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
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

constexpr const char kPrepareFilter[] = "KEEPALIVE_PREPARE";
constexpr const char kObserveFilter[] = "KEEPALIVE_OBSERVE";
constexpr const char kIdleFilter[] = "KEEPALIVE_IDLE";
constexpr const char kNote[] = "keepalive";

ap_filter_rec_t* prepare_filter_handle;
ap_filter_rec_t* observe_filter_handle;
ap_filter_rec_t* idle_filter_handle;

// Whether the MPM waits for the next request in the worker (prefork, worker),
// where the socket timeout can be set per connection; set in post_config.
bool mpm_waits_in_worker = true;

// How the wait for the next request ended, as the connection's input saw it.
enum class IdleEnd { Waiting, RequestArrived, TimedOut, ClientGone };

// Per connection, created once from the connection pool.
struct ConnectionState {
    conn_rec* connection = nullptr;
    apr_time_t accepted = 0;
    apr_interval_time_t next_idle_timeout = -1;  // decided by the last kept response
    std::uint64_t requests = 0;                  // responses the module decided on
    bool last_kept = false;
    keepalive::CloseReason last_reason = keepalive::CloseReason::None;
    int metrics_slot = 0;  // the virtual host of the last request
    IdleEnd idle_end = IdleEnd::RequestArrived;
};

// Per response, shared by the two filters; lives in the main request's pool,
// which internal redirects and ErrorDocument share.
struct ResponseState {
    keepalive::ConnectionLimits limits;
    keepalive::Settings settings;
    keepalive::ResponseFacts facts;
    keepalive::Decision decision;
    bool prepared = false;
    bool observed = false;

    // What PREPARE changed and OBSERVE puts back.
    request_rec* changed_request = nullptr;
    bool injected_token = false;
    const char* original_connection = nullptr;  // request's Connection before injection
    server_rec* original_server = nullptr;       // set when r->server was swapped
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

const char* first_header(const request_rec* r, const char* name) {
    const char* value = apr_table_get(r->err_headers_out, name);
    return value ? value : apr_table_get(r->headers_out, name);
}

bool body_is_delimited(const request_rec* r) {
    return r->header_only || AP_STATUS_IS_HEADER_ONLY(r->status) || r->chunked ||
           first_header(r, "Content-Length") != nullptr ||
           ap_is_chunked(r->pool, first_header(r, "Transfer-Encoding"));
}

keepalive::ResponseFacts gather_facts(const request_rec* r, bool disabled_by_condition) {
    const conn_rec* c = r->connection;
    keepalive::ResponseFacts f;
    // The same downgrade core's basic_http_header_check() applies just before
    // it decides.
    int proto = r->proto_num;
    // force-no-vary: HTTP_HEADER turns the response into HTTP/1.0 and sets
    // force-response-1.0 itself, after this filter has run.
    const bool no_vary = apr_table_get(r->subprocess_env, "force-no-vary") != nullptr;
    if (no_vary || (proto > HTTP_VERSION(1, 0) && apr_table_get(r->subprocess_env, "downgrade-1.0"))) {
        proto = HTTP_VERSION(1, 0);
    }
    f.http_major = HTTP_VERSION_MAJOR(proto);
    f.http_minor = HTTP_VERSION_MINOR(proto);
    f.multiplexed = proto >= HTTP_VERSION(2, 0) || c->master != nullptr;
    f.headerless = r->assbackwards != 0;

    const char* request_connection = apr_table_get(r->headers_in, "Connection");
    const char* response_connection = first_header(r, "Connection");
    f.request_connection = request_connection ? request_connection : "";
    f.response_connection = response_connection ? response_connection : "";

    f.status = r->status;
    f.head_request = r->header_only != 0;
    f.framing = body_is_delimited(r) ? keepalive::BodyFraming::Delimited : keepalive::BodyFraming::Unknown;
    f.expecting_100 = r->expecting_100 != 0;
    f.nokeepalive_env = apr_table_get(r->subprocess_env, "nokeepalive") != nullptr;
    f.via_present = apr_table_get(r->headers_in, "Via") != nullptr;
    f.forced_http10 = no_vary || (proto == HTTP_VERSION(1, 0) && apr_table_get(r->subprocess_env, "force-response-1.0"));
    f.connection_marked_close = c->keepalive == AP_CONN_CLOSE;
    f.responses_kept_before = c->keepalives;
    if (const ConnectionState* cs = connection_state(c)) f.connection_age_us = r->request_time - cs->accepted;
    f.forward_proxy = r->proxyreq == PROXYREQ_PROXY;
    f.disabled_by_condition = disabled_by_condition;
    f.server_stopping = server_stopping();
    return f;
}

// Handlers, CGI scripts, proxied backends and mod_headers can all put their
// own Keep-Alive and "Connection: keep-alive" into the response. Only the
// module's decision may reach the client, so theirs go; other Connection
// tokens ("close", "Upgrade") stay.
void drop_foreign_keepalive_headers(request_rec* r, apr_table_t* headers) {
    apr_table_unset(headers, "Keep-Alive");
    const char* connection = apr_table_get(headers, "Connection");
    if (!connection || !keepalive::list_has_token(connection, "keep-alive")) return;
    const std::string rest = keepalive::list_without_token(connection, "keep-alive");
    if (rest.empty()) {
        apr_table_unset(headers, "Connection");
    } else {
        apr_table_set(headers, "Connection", apr_pstrmemdup(r->pool, rest.data(), rest.size()));
    }
}

void undo_preparation(ResponseState* st) {
    request_rec* r = st->changed_request;
    if (!r) return;
    if (st->injected_token) {
        if (st->original_connection) {
            apr_table_setn(r->headers_in, "Connection", st->original_connection);
        } else {
            apr_table_unset(r->headers_in, "Connection");
        }
        st->injected_token = false;
    }
    if (st->original_server) {
        r->server = st->original_server;
        st->original_server = nullptr;
    }
    st->changed_request = nullptr;
}

// Makes core print the decision's values: core reads them from r->server.
void swap_server_for_printout(ResponseState* st, request_rec* r) {
    const keepalive::Decision& d = st->decision;
    const int max_requests = d.max_remaining < 0 ? 0 : d.max_remaining + st->facts.responses_kept_before;
    if (r->server->keep_alive_timeout == d.advertised_timeout_us && r->server->keep_alive_max == max_requests) {
        return;
    }
    auto* printed = static_cast<server_rec*>(apr_pmemdup(r->pool, r->server, sizeof(server_rec)));
    printed->keep_alive_timeout = d.advertised_timeout_us;
    printed->keep_alive_max = max_requests;
    st->original_server = r->server;
    r->server = printed;
}

void prepare(ResponseState* st, request_rec* r) {
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
    bool disabled_by_condition = false;
    st->limits = enforced_limits(r);
    st->settings = cfg::settings_for(r, &disabled_by_condition);
    st->facts = gather_facts(r, disabled_by_condition);
    if (st->settings.adaptive.enabled) {
        st->facts.occupancy_permille = cfg::worker_occupancy(apr_time_now(), cfg::occupancy_sample_interval());
    }
    st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    if (closed_by_module && st->decision.reason == keepalive::CloseReason::MarkedClose) {
        st->decision.reason = earlier_reason;  // the module's own mark: report why it made it
    }
    if (st->decision.verdict == keepalive::Verdict::NotApplicable) return;

    drop_foreign_keepalive_headers(r, r->headers_out);
    drop_foreign_keepalive_headers(r, r->err_headers_out);

    if (!st->decision.keep()) {
        c->keepalive = AP_CONN_CLOSE;
        return;
    }

    st->changed_request = r;
    if (st->decision.send_header && !st->decision.client_opted_in) {
        st->original_connection = apr_table_get(r->headers_in, "Connection");
        apr_table_setn(r->headers_in, "Connection",
                       st->original_connection
                           ? apr_pstrcat(r->pool, st->original_connection, ", keep-alive", nullptr)
                           : "keep-alive");
        st->injected_token = true;
    }
    swap_server_for_printout(st, r);
}

bool carries_error_or_eoc(apr_bucket_brigade* bb) {
    for (apr_bucket* b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb); b = APR_BUCKET_NEXT(b)) {
        if (AP_BUCKET_IS_ERROR(b) || AP_BUCKET_IS_EOC(b)) return true;
    }
    return false;
}

apr_status_t prepare_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    auto* st = static_cast<ResponseState*>(f->ctx);
    if (st->observed) {
        ap_remove_output_filter(f);
    } else if (!APR_BRIGADE_EMPTY(bb) && !carries_error_or_eoc(bb)) {
        // An error bucket makes HTTP_HEADER discard this response and send an
        // error document through this filter again: decide for that one.
        prepare(st, f->r);
    }
    return ap_pass_brigade(f->next, bb);
}

bool is_keep_alive_field(const char* line, const char* end) {
    static constexpr char kName[] = "keep-alive:";
    const std::size_t n = sizeof(kName) - 1;
    return static_cast<std::size_t>(end - line) >= n && ap_cstr_casecmpn(line, kName, n) == 0;
}

bool is_blank_line(const char* line, const char* end) {
    return (end - line == 1 && line[0] == '\n') || (end - line == 2 && line[0] == '\r' && line[1] == '\n');
}

// "KeepAliveHeader Never" on a response core wrote Keep-Alive on (the client
// sent the keep-alive token, which HTTP/1.0 persistence needs): drop that
// line from the serialized header block. Core wrote the block itself, so its
// shape is known: a status line, CRLF-terminated fields, an empty line.
void remove_keep_alive_field(request_rec* r, apr_bucket_brigade* bb) {
    apr_bucket* b = APR_BRIGADE_FIRST(bb);
    while (b != APR_BRIGADE_SENTINEL(bb) && !APR_BUCKET_IS_METADATA(b)) b = APR_BUCKET_NEXT(b);
    apr_bucket_brigade* rest = apr_brigade_split_ex(bb, b, nullptr);
    char* block = nullptr;
    apr_size_t length = 0;
    if (apr_brigade_pflatten(bb, &block, &length, r->pool) == APR_SUCCESS) {
        const char* end = block + length;
        char* out = block;
        bool removed = false;
        bool in_fields = true;  // nothing after the empty line is touched
        for (const char* line = block; line < end;) {
            const char* eol = static_cast<const char*>(memchr(line, '\n', static_cast<std::size_t>(end - line)));
            const char* next = eol ? eol + 1 : end;
            if (is_blank_line(line, next)) in_fields = false;
            if (in_fields && line != block && is_keep_alive_field(line, next)) {
                removed = true;
            } else {
                memmove(out, line, static_cast<std::size_t>(next - line));
                out += next - line;
            }
            line = next;
        }
        if (removed) {
            apr_brigade_cleanup(bb);
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(block, static_cast<apr_size_t>(out - block), r->pool,
                                                               r->connection->bucket_alloc));
        }
    }
    APR_BRIGADE_CONCAT(bb, rest);
}

// What the decision was, for the access log (%{keepalive}n), the trace log,
// the counters and the connection's end.
void record(request_rec* r, const keepalive::Decision& d, bool kept) {
    const char* note = nullptr;
    if (kept) {
        note = d.max_remaining >= 0 ? apr_psprintf(r->pool, "keep timeout=%d max=%d", d.advertised_timeout_s,
                                                   d.max_remaining)
                                    : apr_psprintf(r->pool, "keep timeout=%d", d.advertised_timeout_s);
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "%s (idle %" APR_TIME_T_FMT " ms%s)", note,
                      apr_time_as_msec(d.idle_timeout_us), d.send_header ? "" : ", no header");
    } else {
        note = apr_pstrcat(r->pool, "close ", keepalive::reason_name(d.reason), nullptr);
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "%s", note);
    }
    // mod_log_config reads notes from the request it logs: the first one by
    // default, the last with %>{...}n; internal redirects have their own.
    for (request_rec* each = r; each; each = each->prev) apr_table_setn(each->notes, kNote, note);

    const int slot = cfg::metrics_slot(r->server);
    cfg::count_response(slot, kept);
    if (ConnectionState* cs = connection_state(r->connection)) {
        ++cs->requests;
        cs->last_kept = kept;
        cs->last_reason = d.reason;
        cs->metrics_slot = slot;
        cs->next_idle_timeout = d.idle_timeout_us;
        cs->idle_end = IdleEnd::Waiting;
    }
}

void observe(ResponseState* st, request_rec* r, apr_bucket_brigade* header_block) {
    conn_rec* c = r->connection;
    const bool core_kept = c->keepalive == AP_CONN_KEEPALIVE;
    undo_preparation(st);
    if (!st->prepared || st->decision.verdict == keepalive::Verdict::NotApplicable) return;

    // Now that core has framed the body, the policy can judge it too.
    st->facts.framing = body_is_delimited(r) ? keepalive::BodyFraming::Delimited : keepalive::BodyFraming::Undelimited;
    st->decision = keepalive::decide(st->limits, st->settings, st->facts);
    const keepalive::Decision& d = st->decision;
    if (d.keep() != core_kept) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "mod_keepalive: policy decided %s (%s) but core %s the connection",
                      d.keep() ? "keep" : "close", keepalive::reason_name(d.reason), core_kept ? "kept" : "closed");
        if (!core_kept) {
            // Count what happened: core closed for a reason the policy missed.
            st->decision.verdict = keepalive::Verdict::Close;
            st->decision.reason = keepalive::CloseReason::MarkedClose;
        }
    }
    record(r, d, core_kept);
    if (core_kept && !d.send_header && apr_table_get(r->headers_out, "Keep-Alive")) {
        remove_keep_alive_field(r, header_block);
    }
}

apr_status_t observe_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    auto* st = static_cast<ResponseState*>(f->ctx);
    if (!APR_BRIGADE_EMPTY(bb) && !st->observed) {
        // HTTP_HEADER passes the header block down on its own first, so the
        // first brigade here means core has decided.
        st->observed = true;
        observe(st, f->r, bb);
        ap_remove_output_filter(f);
    }
    return ap_pass_brigade(f->next, bb);
}

ResponseState* response_state(request_rec* r) {
    return static_cast<ResponseState*>(ap_get_module_config(r->request_config, &keepalive_module));
}

// Main requests only, as core's own HTTP_HEADER: subrequests write into the
// main response, and internal redirects inherit the protocol filters.
bool is_first_main_request(const request_rec* r) {
    return !r->main && !r->prev && !r->connection->master;
}

// Runs before http_core's create_request, so the filter lands ahead of
// BYTERANGE, CONTENT_LENGTH and HTTP_HEADER (same-type filters are appended).
int add_prepare_filter(request_rec* r) {
    if (!r->main && r->prev && !r->connection->master) {
        // An internal redirect (ErrorDocument after ap_die in BYTERANGE or
        // HTTP_HEADER) copies r->server and shares r->headers_in: give the new
        // request the real server and the client's own Connection header.
        request_rec* first = r->prev;
        while (first->prev) first = first->prev;
        if (ResponseState* st = response_state(first)) {
            if (st->original_server && st->changed_request && r->server == st->changed_request->server) {
                r->server = st->original_server;
            }
            undo_preparation(st);
        }
        return DECLINED;
    }
    if (!is_first_main_request(r)) return DECLINED;
    auto* st = new (apr_palloc(r->pool, sizeof(ResponseState))) ResponseState();
    ap_set_module_config(r->request_config, &keepalive_module, st);
    ap_add_output_filter_handle(prepare_filter_handle, st, r, r->connection);
    return DECLINED;
}

// Runs after http_core's create_request, so the filter lands after HTTP_HEADER.
int add_observe_filter(request_rec* r) {
    ResponseState* st = is_first_main_request(r) ? response_state(r) : nullptr;
    if (st) ap_add_output_filter_handle(observe_filter_handle, st, r, r->connection);
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

// Watches the reads that follow a kept response: the next request's first
// bytes, the socket timeout (prefork, worker) or the client's close. Event
// closes timed-out connections in its listener without reading: a connection
// still waiting when it ends timed out.
apr_status_t idle_filter(ap_filter_t* f, apr_bucket_brigade* bb, ap_input_mode_t mode, apr_read_type_e block,
                         apr_off_t readbytes) {
    auto* cs = static_cast<ConnectionState*>(f->ctx);
    const apr_status_t rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    if (cs->idle_end != IdleEnd::Waiting) return rv;
    if (APR_STATUS_IS_TIMEUP(rv) || APR_STATUS_IS_ETIMEDOUT(rv)) {
        cs->idle_end = IdleEnd::TimedOut;
    } else if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        cs->idle_end = IdleEnd::ClientGone;
    } else if (APR_BRIGADE_EMPTY(bb)) {
        // A blocking read that returns nothing is the client's close (core's
        // input filter turns EOF into an empty brigade); a non-blocking one,
        // such as core's check for a pipelined request, just found no data.
        if (block == APR_BLOCK_READ) cs->idle_end = IdleEnd::ClientGone;
    } else {
        cs->idle_end = APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb)) ? IdleEnd::ClientGone : IdleEnd::RequestArrived;
    }
    return rv;
}

int track_connection(conn_rec* c, void*) {
    // HTTP/2 streams and mod_proxy's backend connections: nothing to decide.
    if (c->master || c->outgoing) return DECLINED;
    auto* cs = new (apr_palloc(c->pool, sizeof(ConnectionState))) ConnectionState();
    cs->connection = c;
    cs->accepted = apr_time_now();
    ap_set_module_config(c->conn_config, &keepalive_module, cs);
    ap_add_input_filter_handle(idle_filter_handle, cs, nullptr, c);
    apr_pool_cleanup_register(c->pool, cs, count_connection_end, apr_pool_cleanup_null);
    return DECLINED;
}

// Prefork and worker: the idle wait before this request is a blocking read
// with the socket timeout core set from the vhost; make it the one the
// previous response decided (and advertised no more than).
void set_idle_timeout(request_rec*, conn_rec* c) {
    if (!mpm_waits_in_worker || c->keepalives == 0) return;
    const ConnectionState* cs = connection_state(c);
    if (!cs || cs->next_idle_timeout < 0) return;
    if (apr_socket_t* socket = ap_get_conn_socket(c)) apr_socket_timeout_set(socket, cs->next_idle_timeout);
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
    static const char* const after_http_core[] = {"http_core.c", nullptr};
    ap_hook_check_config(cfg::check_config, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_child_init(cfg::load_child_init, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(track_connection, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_pre_read_request(set_idle_timeout, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_create_request(add_prepare_filter, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_create_request(add_observe_filter, after_http_core, nullptr, APR_HOOK_REALLY_LAST);
    ap_hook_handler(cfg::metrics_handler, nullptr, nullptr, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, cfg::metrics_status_section, nullptr, nullptr, APR_HOOK_MIDDLE);
    prepare_filter_handle = ap_register_output_filter(kPrepareFilter, prepare_filter, nullptr, AP_FTYPE_PROTOCOL);
    observe_filter_handle = ap_register_output_filter(kObserveFilter, observe_filter, nullptr, AP_FTYPE_PROTOCOL);
    idle_filter_handle = ap_register_input_filter(kIdleFilter, idle_filter, nullptr, AP_FTYPE_CONNECTION);
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
