#include "httpd/metrics_endpoint.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "httpd.h"
#include "http_config.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_status.h"
#include "apr_strings.h"

#include "core/counters.h"
#include "core/drain.h"
#include "core/pressure.h"
#include "httpd/config.h"
#include "httpd/drain.h"
#include "httpd/load.h"
#include "httpd/shared_counters.h"

namespace keepalive::httpd {
namespace {

bool wants_json(const request_rec* r) {
    if (!r->args) return false;
    for (const char* p = r->args; *p;) {
        const char* end = std::strchr(p, '&');
        const std::size_t n = end ? static_cast<std::size_t>(end - p) : std::strlen(p);
        if (n == 11 && std::strncmp(p, "format=json", 11) == 0) return true;
        if (!end) break;
        p = end + 1;
    }
    return false;
}

// The pressure now and the share of each server's idle timeout the
// adaptive mode would advertise at it: the main server's unlabelled, and
// each virtual host's once by name, for the hosts that have counter series
// (`shown`), so that a scrape grows with the hosts in use here too.
keepalive::PressureGauges pressure_gauges(const std::vector<NamedValues>& shown) {
    keepalive::PressureGauges g;
    g.pressure = fresh_pressure(apr_time_now());
    const auto scale_of = [&g](const server_rec* s) {
        return keepalive::timeout_scale(s->keep_alive_timeout, adaptive_settings_of(s), g.pressure);
    };
    g.timeout_scale = scale_of(ap_server_conf);
    for (const server_rec* s = ap_server_conf; s; s = s->next) {
        std::string name = vhost_name(s);
        const auto named = [&name](const auto& v) { return v.name == name; };
        if (std::none_of(shown.begin(), shown.end(), named)) continue;
        const bool seen = std::any_of(g.vhost_scales.begin(), g.vhost_scales.end(),
                                      [&name](const auto& v) { return v.first == name; });
        if (!seen) g.vhost_scales.emplace_back(std::move(name), scale_of(s));
    }
    return g;
}

// Prometheus text, or JSON with ?format=json.
__attribute__((noinline)) int serve_metrics(request_rec* r) {
    r->allowed = AP_METHOD_BIT << M_GET;
    r->allowed_methods->method_mask = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET) return HTTP_METHOD_NOT_ALLOWED;

    const CounterValues total = total_values();
    const std::vector<NamedValues> vhosts = vhost_values();
    const keepalive::DrainSchedule drain = drain_schedule();
    const apr_time_t now = apr_time_now();
    std::string body;
    if (wants_json(r)) {
        ap_set_content_type(r, "application/json");
        body = render_json(total, vhosts,
                           keepalive::render_drain_json_member(drain, now) + "," +
                               keepalive::render_pressure_json_members(pressure_gauges(vhosts)));
    } else {
        ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
        body = render_prometheus(total, vhosts) + keepalive::render_drain_prometheus(drain, now) +
               keepalive::render_pressure_prometheus(pressure_gauges(vhosts));
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, static_cast<apr_off_t>(body.size()));
    if (!r->header_only) ap_rwrite(body.data(), static_cast<int>(body.size()), r);
    return OK;
}

// handler: SetHandler keepalive-status. Runs for every request: the first
// letter turns away nearly all, before serve_metrics()'s frame is set up.
int metrics_handler(request_rec* r) {
    if (!r->handler || r->handler[0] != 'k' || std::strcmp(r->handler, "keepalive-status") != 0) return DECLINED;
    return serve_metrics(r);
}

// mod_status's status_hook: a section on /server-status, lines on ?auto.
int metrics_status_section(request_rec* r, int flags) {
    const CounterValues total = total_values();
    if (flags & AP_STATUS_SHORT) {
        ap_rputs(render_status_auto(total).c_str(), r);
        return OK;
    }
    ap_rputs("<hr />\n<h2>mod_keepalive</h2>\n", r);
    ap_rprintf(r, "<p>%" APR_UINT64_T_FMT " requests decided: %" APR_UINT64_T_FMT " kept the connection, %"
                  APR_UINT64_T_FMT " closed it. %" APR_UINT64_T_FMT " connections closed, %.2f requests each "
                  "on average.</p>\n",
               total.requests, total.responses_keep, total.responses_close, total.requests_per_connection_count,
               total.requests_per_connection_count
                   ? static_cast<double>(total.requests_per_connection_sum) /
                         static_cast<double>(total.requests_per_connection_count)
                   : 0.0);
    ap_rputs("<table border=\"0\"><tr><th>Connections closed because</th><th>Count</th></tr>\n", r);
    for (std::size_t i = 1; i < kCloseReasonCount; ++i) {
        ap_rprintf(r, "<tr><td>%s</td><td>%" APR_UINT64_T_FMT "</td></tr>\n",
                   keepalive::reason_name(static_cast<keepalive::CloseReason>(i)), total.connections_closed[i]);
    }
    ap_rputs("</table>\n<table border=\"0\"><tr><th>Virtual host</th><th>Requests</th><th>Kept</th>"
             "<th>Closed</th></tr>\n", r);
    for (const NamedValues& v : vhost_values()) {
        ap_rprintf(r, "<tr><td>%s</td><td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT "</td><td>%"
                      APR_UINT64_T_FMT "</td></tr>\n",
                   ap_escape_html(r->pool, v.name.c_str()), v.values.requests, v.values.responses_keep,
                   v.values.responses_close);
    }
    ap_rputs("</table>\n", r);
    return OK;
}

}  // namespace

void register_metrics_endpoint_hooks() {
    ap_hook_handler(metrics_handler, nullptr, nullptr, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, metrics_status_section, nullptr, nullptr, APR_HOOK_MIDDLE);
}

}  // namespace keepalive::httpd
