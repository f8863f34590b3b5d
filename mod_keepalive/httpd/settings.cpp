// The merged configuration read back: the settings a request decides with
// (one line per directive, its value or the default), a server's adaptive
// settings, and the values only the main server sets. config.cpp parses
// and merges; this file only reads.
#include "httpd/config.h"

#include "http_log.h"
#include "http_main.h"

#include "core/defaults.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {

keepalive::AdaptiveSettings adaptive_settings_of(const server_rec* s) {
    const auto* server = static_cast<const ServerConfig*>(ap_get_module_config(s->module_config, &keepalive_module));
    namespace defaults = keepalive::defaults;
    keepalive::AdaptiveSettings a;
    a.enabled = server->adaptive >= 0 ? server->adaptive == 1 : defaults::kAdaptive;
    // KeepAliveAdaptiveThresholds sets both or neither.
    a.shrink_at_permille =
        server->shrink_at_permille >= 0 ? server->shrink_at_permille : defaults::kAdaptiveShrinkAtPermille;
    a.close_at_permille = server->close_at_permille >= 0 ? server->close_at_permille : defaults::kAdaptiveCloseAtPermille;
    a.floor_us = server->adaptive_floor != kUnset ? server->adaptive_floor : defaults::kAdaptiveFloorUs;
    return a;
}

// Every directive resolved for the request, one line each: its value where
// a section set it, else the default (core/defaults.h; unset optional
// values fall back to core's own, in the policy).
keepalive::Settings settings_for(request_rec* r, bool* disabled_by_condition) {
    const auto* dir = static_cast<const DirConfig*>(ap_get_module_config(r->per_dir_config, &keepalive_module));
    const auto* server = static_cast<const ServerConfig*>(ap_get_module_config(r->server->module_config,
                                                                               &keepalive_module));
    namespace defaults = keepalive::defaults;
    keepalive::Settings s;
    s.header_mode = dir->header_mode >= 0 ? static_cast<keepalive::HeaderMode>(dir->header_mode) : defaults::kHeaderMode;
    if (dir->idle_timeout != kUnset) s.idle_timeout_us = dir->idle_timeout;
    if (dir->advertised_timeout != kUnset) s.advertised_timeout_us = dir->advertised_timeout;
    if (dir->max_lifetime != kUnset) s.max_lifetime_us = dir->max_lifetime;
    s.max_lifetime_jitter_permille =
        dir->max_lifetime_jitter >= 0 ? dir->max_lifetime_jitter : defaults::kMaxLifetimeJitterPermille;
    if (dir->max_requests >= 0) s.max_requests = dir->max_requests;
    s.http10 = server->http10 >= 0 ? server->http10 == 1 : defaults::kHttp10;
    s.adaptive = adaptive_settings_of(r->server);

    *disabled_by_condition = false;
    if (dir->disable_if) {
        const char* err = nullptr;
        const int result = ap_expr_exec(r, dir->disable_if, &err);
        if (err) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "mod_keepalive: KeepAliveDisableIf could not be evaluated, ignored: %s", err);
        } else {
            *disabled_by_condition = result > 0;
        }
    }
    return s;
}

bool policy_is_cores(const request_rec* r) {
    const auto* dir = static_cast<const DirConfig*>(ap_get_module_config(r->per_dir_config, &keepalive_module));
    const auto* server = static_cast<const ServerConfig*>(ap_get_module_config(r->server->module_config,
                                                                               &keepalive_module));
    return !dir->any_set && server->adaptive != 1;
}

apr_interval_time_t occupancy_sample_interval() {
    const auto* main_conf =
        static_cast<const ServerConfig*>(ap_get_module_config(ap_server_conf->module_config, &keepalive_module));
    return main_conf->sample_interval != kUnset ? main_conf->sample_interval
                                                : keepalive::defaults::kAdaptiveSampleIntervalUs;
}

bool accept_queue_wanted() {
    const auto* main_conf =
        static_cast<const ServerConfig*>(ap_get_module_config(ap_server_conf->module_config, &keepalive_module));
    return main_conf->adaptive_queue >= 0 ? main_conf->adaptive_queue == 1 : keepalive::defaults::kAdaptiveQueue;
}

apr_interval_time_t drain_spread() {
    const auto* main_conf =
        static_cast<const ServerConfig*>(ap_get_module_config(ap_server_conf->module_config, &keepalive_module));
    return main_conf->drain_spread;
}
}  // namespace keepalive::httpd
