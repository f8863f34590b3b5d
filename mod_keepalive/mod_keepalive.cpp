// mod_keepalive: the Apache httpd adapter.
//
// The only file that includes httpd and APR headers. It turns a response into
// keepalive::ResponseFacts, asks the policy core (ka_policy.h) for a decision,
// and makes core's HTTP_HEADER filter carry it out.
//
// How it acts, and why this way. Core decides persistence in ap_set_keepalive(),
// called from the HTTP_HEADER filter right before the header block is
// serialized; nothing runs in between. So the module brackets that filter:
//
//   KEEPALIVE_PREPARE  first protocol filter, runs before HTTP_HEADER
//       decides, removes Keep-Alive values that handlers or mod_headers set,
//       and arranges for core to carry the decision out:
//         close -> c->keepalive = AP_CONN_CLOSE, core writes "Connection: close";
//         keep  -> core writes "Keep-Alive: timeout=T, max=M" only when the
//                  request carried the keep-alive token, so the module adds
//                  that token to the request's Connection header for the
//                  duration of HTTP_HEADER (HTTP/1.1 is persistent either
//                  way, the token only changes what core prints). When the
//                  idle timeout core would print is not the one the MPM
//                  enforces, r->server is swapped for a request-pool copy
//                  carrying the enforced value, for the same duration.
//   KEEPALIVE_OBSERVE  after HTTP_HEADER, sees the first bytes of the header
//       block: reads the verdict core applied, undoes both changes above, and
//       checks that the policy predicted it.
//
// Because core itself writes the header only when it keeps the connection,
// a response that closes can never carry a Keep-Alive header.

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

#include "ka_policy.h"
#include "ka_tokens.h"

#ifndef MOD_KEEPALIVE_VERSION
#error "MOD_KEEPALIVE_VERSION must be defined by the build (see Makefile)"
#endif

extern "C" {
extern module AP_MODULE_DECLARE_DATA keepalive_module;
}
APLOG_USE_MODULE(keepalive);

namespace {

constexpr const char kPrepareFilter[] = "KEEPALIVE_PREPARE";
constexpr const char kObserveFilter[] = "KEEPALIVE_OBSERVE";

ap_filter_rec_t* prepare_filter_handle;
ap_filter_rec_t* observe_filter_handle;

// Per response, shared by the two filters; lives in the main request's pool,
// which internal redirects and ErrorDocument share.
struct ResponseState {
    keepalive::ConnectionLimits limits;
    keepalive::ResponseFacts facts;
    keepalive::Decision decision;
    bool prepared = false;
    bool observed = false;

    // What PREPARE changed and OBSERVE puts back.
    request_rec* changed_request = nullptr;
    int original_keepalive_state = AP_CONN_UNKNOWN;
    bool injected_token = false;
    const char* original_connection = nullptr;  // request's Connection before injection
    server_rec* original_server = nullptr;       // set when r->server was swapped
};

// The limits the MPM will enforce after this response. Core prints
// r->server->keep_alive_timeout, but the sync MPMs and event both wait with
// the base server's (first vhost on the address) timeout when the name-based
// vhost did not set one: advertise what is enforced.
keepalive::ConnectionLimits enforced_limits(const request_rec* r) {
    const server_rec* s = r->server;
    const server_rec* timeout_source = s->keep_alive_timeout_set ? s : r->connection->base_server;
    keepalive::ConnectionLimits limits;
    limits.keep_alive = s->keep_alive != 0;
    limits.idle_timeout_us = timeout_source->keep_alive_timeout;
    limits.max_requests = s->keep_alive_max;
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

keepalive::ResponseFacts gather_facts(const request_rec* r) {
    const conn_rec* c = r->connection;
    keepalive::ResponseFacts f;
    // The same downgrade core's basic_http_header_check() applies just before
    // it decides.
    int proto = r->proto_num;
    if (proto > HTTP_VERSION(1, 0) && apr_table_get(r->subprocess_env, "downgrade-1.0")) {
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
    f.forced_http10 = proto == HTTP_VERSION(1, 0) && apr_table_get(r->subprocess_env, "force-response-1.0");
    f.connection_marked_close = c->keepalive == AP_CONN_CLOSE;
    f.responses_kept_before = c->keepalives;
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

void prepare(ResponseState* st, request_rec* r) {
    conn_rec* c = r->connection;
    if (st->prepared) {
        // A new response for the same request (ap_die after an error bucket):
        // start again from what core had before the module acted.
        undo_preparation(st);
        c->keepalive = static_cast<ap_conn_keepalive_e>(st->original_keepalive_state);
    }
    st->prepared = true;
    st->original_keepalive_state = c->keepalive;
    st->limits = enforced_limits(r);
    st->facts = gather_facts(r);
    st->decision = keepalive::decide(st->limits, st->facts);
    if (st->decision.verdict == keepalive::Verdict::NotApplicable) return;

    drop_foreign_keepalive_headers(r, r->headers_out);
    drop_foreign_keepalive_headers(r, r->err_headers_out);

    if (!st->decision.keep()) {
        c->keepalive = AP_CONN_CLOSE;
        return;
    }

    st->changed_request = r;
    if (!st->decision.client_opted_in) {
        st->original_connection = apr_table_get(r->headers_in, "Connection");
        apr_table_setn(r->headers_in, "Connection",
                       st->original_connection
                           ? apr_pstrcat(r->pool, st->original_connection, ", keep-alive", nullptr)
                           : "keep-alive");
        st->injected_token = true;
    }
    if (r->server->keep_alive_timeout != st->limits.idle_timeout_us) {
        auto* printed = static_cast<server_rec*>(apr_pmemdup(r->pool, r->server, sizeof(server_rec)));
        printed->keep_alive_timeout = st->limits.idle_timeout_us;
        st->original_server = r->server;
        r->server = printed;
    }
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

void observe(ResponseState* st, request_rec* r) {
    conn_rec* c = r->connection;
    const bool core_kept = c->keepalive == AP_CONN_KEEPALIVE;
    undo_preparation(st);
    if (!st->prepared || st->decision.verdict == keepalive::Verdict::NotApplicable) return;

    // Now that core has framed the body, the policy can judge it too.
    st->facts.framing = body_is_delimited(r) ? keepalive::BodyFraming::Delimited : keepalive::BodyFraming::Undelimited;
    st->decision = keepalive::decide(st->limits, st->facts);
    if (st->decision.keep() != core_kept) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "mod_keepalive: policy decided %s (%s) but core %s the connection",
                      st->decision.keep() ? "keep" : "close", keepalive::reason_name(st->decision.reason),
                      core_kept ? "kept" : "closed");
        return;
    }
    if (st->decision.keep()) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "keep timeout=%d max=%d (idle %" APR_TIME_T_FMT " ms)",
                      st->decision.advertised_timeout_s, st->decision.max_remaining,
                      apr_time_as_msec(st->decision.idle_timeout_us));
    } else {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "close %s", keepalive::reason_name(st->decision.reason));
    }
}

apr_status_t observe_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    auto* st = static_cast<ResponseState*>(f->ctx);
    if (!APR_BRIGADE_EMPTY(bb) && !st->observed) {
        // HTTP_HEADER passes the header block down on its own first, so the
        // first brigade here means core has decided.
        st->observed = true;
        observe(st, f->r);
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

// Adds "mod_keepalive/VERSION" to the Server banner; httpd shows module
// components only with "ServerTokens Full", so the admin decides.
int add_version_component(apr_pool_t* pconf, apr_pool_t*, apr_pool_t*, server_rec*) {
    ap_add_version_component(pconf, "mod_keepalive/" MOD_KEEPALIVE_VERSION);
    return OK;
}

void register_hooks(apr_pool_t*) {
    ap_hook_post_config(add_version_component, nullptr, nullptr, APR_HOOK_MIDDLE);
    static const char* const after_http_core[] = {"http_core.c", nullptr};
    ap_hook_create_request(add_prepare_filter, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_create_request(add_observe_filter, after_http_core, nullptr, APR_HOOK_REALLY_LAST);
    prepare_filter_handle = ap_register_output_filter(kPrepareFilter, prepare_filter, nullptr, AP_FTYPE_PROTOCOL);
    observe_filter_handle = ap_register_output_filter(kObserveFilter, observe_filter, nullptr, AP_FTYPE_PROTOCOL);
}

}  // namespace

extern "C" {
__attribute__((visibility("default"))) module AP_MODULE_DECLARE_DATA keepalive_module = {
    STANDARD20_MODULE_STUFF,
    nullptr,  // per-directory config: core's directives are the only knobs so far
    nullptr,
    nullptr,  // per-server config
    nullptr,
    nullptr,  // directives
    register_hooks,
    AP_MODULE_FLAG_NONE,
};
}
