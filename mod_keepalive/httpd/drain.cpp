// The drain in a running server (see drain.h and core/drain.h).
//
// Why a handler: an operator must reach every child of a running server at
// once, and httpd gives modules no signal or control socket of their own.
// A handler restricted like server-status (Require local) is what Apache
// admins already know, and it is how apachectl's own "status" and
// "fullstatus" reach the server; keepalivectl wraps it, next to apachectl.
// POST changes the state, so that no crawler or prefetch of a GET drains a
// server; GET only reports it.

#include "httpd/drain.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include "httpd/config.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {

DrainShared* drain_shared = nullptr;

namespace {

constexpr std::memory_order kRelaxed = std::memory_order_relaxed;

// post_config, in the parent: a schedule of this generation's own. Made in
// pconf, which each restart clears: the parent drops its mapping, children
// of the old generation keep theirs until they exit.
int drain_post_config(apr_pool_t* pconf, apr_pool_t*, apr_pool_t*, server_rec* main_server) {
    apr_shm_t* shm = nullptr;
    const apr_status_t rv = apr_shm_create(&shm, sizeof(DrainShared), nullptr, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, main_server,
                     "mod_keepalive: cannot create shared memory for the drain");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    drain_shared = new (apr_shm_baseaddr_get(shm)) DrainShared{};
    return OK;
}

// Which action a POST asks for: "action=start" (or none) or "action=cancel".
const char* requested_action(const request_rec* r) {
    if (!r->args || !*r->args) return "start";
    if (std::strcmp(r->args, "action=start") == 0) return "start";
    if (std::strcmp(r->args, "action=cancel") == 0) return "cancel";
    return nullptr;
}

void start_drain(request_rec* r) {
    std::int64_t idle = 0;
    const std::int64_t now = apr_time_now();
    if (!drain_shared->started_us.compare_exchange_strong(idle, now, kRelaxed)) return;  // already under way
    const keepalive::DrainSchedule s = drain_schedule();
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                  "mod_keepalive: drain started by %s: HTTP/1.x responses now close their connections, spread "
                  "over %.1f s; complete in %.1f s",
                  r->useragent_ip, static_cast<double>(s.window_us()) / 1e6,
                  static_cast<double>(s.remaining_us(now)) / 1e6);
}

void cancel_drain(request_rec* r) {
    if (drain_shared->started_us.exchange(0, kRelaxed) == 0) return;
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, "mod_keepalive: drain cancelled by %s: connections are kept again",
                  r->useragent_ip);
}

// handler: SetHandler keepalive-drain. GET reports the drain; POST starts
// it (or cancels it with ?action=cancel) and reports it.
int drain_handler(request_rec* r) {
    if (!r->handler || r->handler[0] != 'k' || std::strcmp(r->handler, "keepalive-drain") != 0) return DECLINED;
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
    if (r->method_number != M_GET && r->method_number != M_POST) return HTTP_METHOD_NOT_ALLOWED;
    if (!drain_shared) return HTTP_SERVICE_UNAVAILABLE;
    if (r->method_number == M_POST) {
        const char* action = requested_action(r);
        if (!action) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                          "mod_keepalive: keepalive-drain: unknown query '%s' (action=start or action=cancel)",
                          r->args);
            return HTTP_BAD_REQUEST;
        }
        if (const int status = ap_discard_request_body(r); status != OK) return status;
        if (action[0] == 's') {
            start_drain(r);
        } else {
            cancel_drain(r);
        }
    }
    const std::string body = keepalive::render_drain_status(drain_schedule(), apr_time_now());
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, static_cast<apr_off_t>(body.size()));
    if (!r->header_only) ap_rwrite(body.data(), static_cast<int>(body.size()), r);
    return OK;
}

}  // namespace

void register_drain_hooks() {
    ap_hook_post_config(drain_post_config, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_handler(drain_handler, nullptr, nullptr, APR_HOOK_MIDDLE);
}

keepalive::DrainSchedule drain_schedule() {
    keepalive::DrainSchedule s;
    if (!drain_shared) return s;
    s.started_us = drain_shared->started_us.load(kRelaxed);
    s.longest_idle_us = drain_shared->longest_idle_us.load(kRelaxed);
    s.spread_us = drain_spread();
    return s;
}

void apply_drain(keepalive::ResponseFacts* facts, const conn_rec* c, apr_time_t accepted) {
    const keepalive::DrainSchedule s = drain_schedule();
    if (!s.active()) return;
    // Any bits that differ between connections: when it was accepted, and
    // the child's connection number.
    const auto key = static_cast<std::uint64_t>(accepted) ^ (static_cast<std::uint64_t>(c->id) << 44);
    const keepalive::DrainVerdict v = keepalive::drain_verdict(s, apr_time_now(), key);
    facts->drain_closes = v.close;
    facts->drain_cap_us = v.cap_us;
}

void note_promised_idle_wait(std::int64_t idle_us) {
    if (!drain_shared || drain_shared->started_us.load(kRelaxed) != 0) return;
    std::int64_t longest = drain_shared->longest_idle_us.load(kRelaxed);
    while (idle_us > longest && !drain_shared->longest_idle_us.compare_exchange_weak(longest, idle_us, kRelaxed)) {
    }
}

}  // namespace keepalive::httpd
