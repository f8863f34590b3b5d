#include "httpd/config.h"

#include <new>
#include <string>

#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_lib.h"
#include "apr_strings.h"

#include "core/defaults.h"
#include "core/directive_args.h"
#include "core/metric_slots.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

template <typename T>
T* pool_new(apr_pool_t* p) {
    return new (apr_pcalloc(p, sizeof(T))) T();
}

DirConfig* dir_config(void* cfg) { return static_cast<DirConfig*>(cfg); }

const char* directive_error(cmd_parms* cmd, const char* arg, const std::string& why) {
    return apr_psprintf(cmd->pool, "%s: invalid value '%s': %s", cmd->cmd->name, arg, why.c_str());
}

// Durations use httpd's own parser, as KeepAliveTimeout and Timeout do:
// a number with an optional unit (ms, s, mi, h), seconds by default.
const char* parse_duration(cmd_parms* cmd, const char* arg, apr_interval_time_t* out) {
    apr_interval_time_t value = 0;
    // httpd's parser reads a word such as "soon" as zero of its first letter's
    // unit: only numbers are durations.
    if (!apr_isdigit(arg[0]) || ap_timeout_parameter_parse(arg, &value, "s") != APR_SUCCESS) {
        return directive_error(cmd, arg, "not a duration (a number, optionally followed by ms, s, mi or h)");
    }
    if (const auto problem = keepalive::check_timeout(value)) return directive_error(cmd, arg, *problem);
    *out = value;
    return nullptr;
}

bool in_server_context(const cmd_parms* cmd) { return cmd->path == nullptr; }

// Within one section both timeouts are known at parse time; whichever comes
// second reports the pair.
const char* check_section_timeouts(cmd_parms* cmd, const DirConfig* conf) {
    if (conf->advertised_timeout == kUnset || conf->idle_timeout == kUnset) return nullptr;
    if (const auto problem = keepalive::check_advertised_timeout(conf->advertised_timeout, conf->idle_timeout)) {
        return apr_psprintf(cmd->pool, "KeepAliveAdvertisedTimeout %" APR_TIME_T_FMT "ms with KeepAliveIdleTimeout %"
                            APR_TIME_T_FMT "ms in the same section: %s",
                            apr_time_as_msec(conf->advertised_timeout), apr_time_as_msec(conf->idle_timeout),
                            problem->c_str());
    }
    return nullptr;
}

// On|Off, with an error that names the value (AP_INIT_FLAG's does not).
const char* parse_on_off(cmd_parms* cmd, const char* arg, int* out) {
    if (!ap_cstr_casecmp(arg, "On")) {
        *out = 1;
    } else if (!ap_cstr_casecmp(arg, "Off")) {
        *out = 0;
    } else {
        return directive_error(cmd, arg, "must be On or Off");
    }
    return nullptr;
}

const char* set_idle_timeout(cmd_parms* cmd, void* cfg, const char* arg) {
    apr_interval_time_t value = 0;
    if (const char* err = parse_duration(cmd, arg, &value)) return err;
    if (in_server_context(cmd)) {
        // For a server or virtual host this is its KeepAliveTimeout, so that
        // every MPM, event's per-vhost keep-alive queues included, enforces it
        // natively; core's inheritance rules for vhosts apply unchanged. Zero
        // is KeepAlive Off: core would read a vhost's zero timeout as "unset"
        // and inherit the main server's.
        if (value == 0) {
            cmd->server->keep_alive = 0;
        } else {
            cmd->server->keep_alive_timeout = value;
            cmd->server->keep_alive_timeout_set = 1;
        }
        return nullptr;
    }
    dir_config(cfg)->idle_timeout = value;
    dir_config(cfg)->any_set = true;
    return check_section_timeouts(cmd, dir_config(cfg));
}

const char* set_advertised_timeout(cmd_parms* cmd, void* cfg, const char* arg) {
    apr_interval_time_t value = 0;
    if (const char* err = parse_duration(cmd, arg, &value)) return err;
    if (value == 0) {
        return directive_error(cmd, arg, "must be above zero (KeepAliveHeader Never sends no header at all)");
    }
    dir_config(cfg)->advertised_timeout = value;
    dir_config(cfg)->any_set = true;
    return check_section_timeouts(cmd, dir_config(cfg));
}

const char* set_max_lifetime(cmd_parms* cmd, void* cfg, const char* arg) {
    dir_config(cfg)->any_set = true;
    return parse_duration(cmd, arg, &dir_config(cfg)->max_lifetime);
}

// Only matters where a lifetime applies, which sets any_set itself.
const char* set_max_lifetime_jitter(cmd_parms* cmd, void* cfg, const char* arg) {
    const auto jitter = keepalive::parse_percentage(arg);
    if (!jitter) return directive_error(cmd, arg, "not a percentage from 0 to 100");
    dir_config(cfg)->max_lifetime_jitter = *jitter;
    return nullptr;
}

const char* set_max_requests(cmd_parms* cmd, void* cfg, const char* arg) {
    const auto count = keepalive::parse_request_count(arg);
    if (!count) return directive_error(cmd, arg, "not a whole number from 0 (unlimited) to 2147483647");
    if (in_server_context(cmd)) {
        // As MaxKeepAliveRequests, for the same reason as KeepAliveIdleTimeout.
        cmd->server->keep_alive_max = *count;
        return nullptr;
    }
    dir_config(cfg)->max_requests = *count;
    dir_config(cfg)->any_set = true;
    return nullptr;
}

const char* set_header_mode(cmd_parms* cmd, void* cfg, const char* arg) {
    const auto mode = keepalive::parse_header_mode(arg);
    if (!mode) return directive_error(cmd, arg, "must be Always, OnRequest or Never");
    dir_config(cfg)->header_mode = static_cast<int>(*mode);
    dir_config(cfg)->any_set = true;
    return nullptr;
}

ServerConfig* server_config(cmd_parms* cmd) {
    return static_cast<ServerConfig*>(ap_get_module_config(cmd->server->module_config, &keepalive_module));
}

const char* set_http10(cmd_parms* cmd, void*, const char* arg) {
    return parse_on_off(cmd, arg, &server_config(cmd)->http10);
}

const char* set_adaptive(cmd_parms* cmd, void*, const char* arg) {
    return parse_on_off(cmd, arg, &server_config(cmd)->adaptive);
}

const char* set_adaptive_thresholds(cmd_parms* cmd, void*, const char* shrink_arg, const char* close_arg) {
    const auto shrink_at = keepalive::parse_percentage(shrink_arg);
    if (!shrink_at) return directive_error(cmd, shrink_arg, "not a percentage from 0 to 100");
    const auto close_at = keepalive::parse_percentage(close_arg);
    if (!close_at) return directive_error(cmd, close_arg, "not a percentage from 0 to 100");
    if (const auto problem = keepalive::check_adaptive_thresholds(*shrink_at, *close_at)) {
        return directive_error(cmd, apr_pstrcat(cmd->pool, shrink_arg, " ", close_arg, nullptr), *problem);
    }
    server_config(cmd)->shrink_at_permille = *shrink_at;
    server_config(cmd)->close_at_permille = *close_at;
    return nullptr;
}

const char* set_adaptive_floor(cmd_parms* cmd, void*, const char* arg) {
    return parse_duration(cmd, arg, &server_config(cmd)->adaptive_floor);
}

const char* set_sample_interval(cmd_parms* cmd, void*, const char* arg) {
    if (const char* err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) return err;
    apr_interval_time_t value = 0;
    if (const char* err = parse_duration(cmd, arg, &value)) return err;
    if (value < keepalive::defaults::kAdaptiveSampleIntervalMinUs) {
        return directive_error(cmd, arg, "must be at least 1ms");
    }
    server_config(cmd)->sample_interval = value;
    return nullptr;
}

const char* set_adaptive_queue(cmd_parms* cmd, void*, const char* arg) {
    if (const char* err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) return err;
    return parse_on_off(cmd, arg, &server_config(cmd)->adaptive_queue);
}

const char* set_drain_spread(cmd_parms* cmd, void*, const char* arg) {
    if (const char* err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) return err;
    if (ap_cstr_casecmp(arg, "auto") == 0) {
        server_config(cmd)->drain_spread = kUnset;
        return nullptr;
    }
    return parse_duration(cmd, arg, &server_config(cmd)->drain_spread);
}

const char* set_metrics_per_vhost(cmd_parms* cmd, void*, const char* arg) {
    return parse_on_off(cmd, arg, &server_config(cmd)->metrics_per_vhost);
}

// The number of blocks is fixed when the shared memory is made, so it is the
// whole server's to choose.
const char* set_metrics_max_vhosts(cmd_parms* cmd, void*, const char* arg) {
    if (const char* err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) return err;
    if (ap_cstr_casecmp(arg, "auto") == 0) {
        server_config(cmd)->metrics_max_vhosts = -1;
        return nullptr;
    }
    const auto count = keepalive::parse_request_count(arg);
    if (!count || *count > keepalive::kMaxMetricsVhosts) {
        return directive_error(cmd, arg, "must be auto or a whole number from 0 to " +
                                             std::to_string(keepalive::kMaxMetricsVhosts));
    }
    server_config(cmd)->metrics_max_vhosts = *count;
    return nullptr;
}

const char* set_disable_if(cmd_parms* cmd, void* cfg, const char* arg) {
    const char* err = nullptr;
    // DONT_VARY: whether a connection stays open is per hop, not part of the
    // representation; the headers it reads must not end up in Vary.
    ap_expr_info_t* expr = ap_expr_parse_cmd(cmd, arg, AP_EXPR_FLAG_DONT_VARY, &err, nullptr);
    if (err) return directive_error(cmd, arg, std::string("cannot parse expression: ") + err);
    dir_config(cfg)->disable_if = expr;
    dir_config(cfg)->any_set = true;
    return nullptr;
}

template <typename T>
T inherit(T child, T parent, T unset) {
    return child != unset ? child : parent;
}

using cmd_function = const char* (*)();

template <typename F>
cmd_function as_cmd_function(F f) {
    // httpd declares command handlers as an untyped C function pointer when
    // compiled as C++ (http_config.h, no designated initializers); void(*)()
    // is the generic function pointer type the compiler lets through.
    return reinterpret_cast<cmd_function>(reinterpret_cast<void (*)()>(f));
}

}  // namespace

const command_rec directives[] = {
    AP_INIT_TAKE1("KeepAliveHeader", as_cmd_function(set_header_mode), nullptr, RSRC_CONF | ACCESS_CONF,
                  "When to send the Keep-Alive header: Always (default), OnRequest or Never"),
    AP_INIT_TAKE1("KeepAliveIdleTimeout", as_cmd_function(set_idle_timeout), nullptr, RSRC_CONF | ACCESS_CONF,
                  "How long an idle persistent connection is held, e.g. 5 or 1500ms; 0 disables keep-alive"),
    AP_INIT_TAKE1("KeepAliveAdvertisedTimeout", as_cmd_function(set_advertised_timeout), nullptr,
                  RSRC_CONF | ACCESS_CONF, "The timeout= value sent to clients; never above the idle timeout"),
    AP_INIT_TAKE1("KeepAliveMaxRequests", as_cmd_function(set_max_requests), nullptr, RSRC_CONF | ACCESS_CONF,
                  "Requests per connection; 0 is unlimited"),
    AP_INIT_TAKE1("KeepAliveMaxLifetime", as_cmd_function(set_max_lifetime), nullptr, RSRC_CONF | ACCESS_CONF,
                  "Age after which a connection's next response closes it; 0 is unlimited"),
    AP_INIT_TAKE1("KeepAliveMaxLifetimeJitter", as_cmd_function(set_max_lifetime_jitter), nullptr,
                  RSRC_CONF | ACCESS_CONF,
                  "How much shorter than KeepAliveMaxLifetime a connection's lifetime may be, e.g. 10% (default); 0 "
                  "turns it off"),
    AP_INIT_TAKE1("KeepAliveHTTP10", as_cmd_function(set_http10), nullptr, RSRC_CONF,
                 "On (default): HTTP/1.0 clients may opt in to keep-alive; Off: they never get it"),
    AP_INIT_TAKE1("KeepAliveAdaptive", as_cmd_function(set_adaptive), nullptr, RSRC_CONF,
                 "On: shorten idle timeouts, then close connections, as workers fill up"),
    AP_INIT_TAKE2("KeepAliveAdaptiveThresholds", as_cmd_function(set_adaptive_thresholds), nullptr, RSRC_CONF,
                  "Worker occupancy where idle timeouts start to shrink, and where connections are closed, "
                  "e.g. 50% 75%"),
    AP_INIT_TAKE1("KeepAliveAdaptiveFloor", as_cmd_function(set_adaptive_floor), nullptr, RSRC_CONF,
                  "The shortest idle timeout the adaptive mode shrinks to, e.g. 1 or 500ms"),
    AP_INIT_TAKE1("KeepAliveAdaptiveInterval", as_cmd_function(set_sample_interval), nullptr, RSRC_CONF,
                  "How often worker occupancy is sampled from the scoreboard (default 10ms)"),
    AP_INIT_TAKE1("KeepAliveAdaptiveQueue", as_cmd_function(set_adaptive_queue), nullptr, RSRC_CONF,
                  "On (default): close when clients wait in the accept queue; Off: close on worker occupancy"),
    AP_INIT_TAKE1("KeepAliveDrainSpread", as_cmd_function(set_drain_spread), nullptr, RSRC_CONF,
                  "The window a drain spreads its closes over: auto (the longest idle timeout) or a duration"),
    AP_INIT_TAKE1("KeepAliveMetricsPerVhost", as_cmd_function(set_metrics_per_vhost), nullptr, RSRC_CONF,
                  "On (default): series of its own for this virtual host once it serves a request; Off: its "
                  "traffic counts in the whole server's totals only"),
    AP_INIT_TAKE1("KeepAliveMetricsMaxVhosts", as_cmd_function(set_metrics_max_vhosts), nullptr, RSRC_CONF,
                  "How many virtual hosts have counters of their own: auto (default) or a number; the rest "
                  "count together as vhost=\"other\""),
    AP_INIT_TAKE1("KeepAliveDisableIf", as_cmd_function(set_disable_if), nullptr, RSRC_CONF | ACCESS_CONF,
                  "An ap_expr expression; when true the response closes the connection"),
    {nullptr, nullptr, nullptr, 0, RAW_ARGS, nullptr},
};

void* create_dir_config(apr_pool_t* p, char*) { return pool_new<DirConfig>(p); }

void* merge_dir_config(apr_pool_t* p, void* parent_cfg, void* child_cfg) {
    const auto* parent = static_cast<const DirConfig*>(parent_cfg);
    const auto* child = static_cast<const DirConfig*>(child_cfg);
    auto* merged = pool_new<DirConfig>(p);
    merged->header_mode = inherit(child->header_mode, parent->header_mode, -1);
    merged->idle_timeout = inherit(child->idle_timeout, parent->idle_timeout, kUnset);
    merged->advertised_timeout = inherit(child->advertised_timeout, parent->advertised_timeout, kUnset);
    merged->max_lifetime = inherit(child->max_lifetime, parent->max_lifetime, kUnset);
    merged->max_lifetime_jitter = inherit(child->max_lifetime_jitter, parent->max_lifetime_jitter, -1);
    merged->max_requests = inherit(child->max_requests, parent->max_requests, -1);
    merged->disable_if = child->disable_if ? child->disable_if : parent->disable_if;
    merged->any_set = parent->any_set || child->any_set;
    return merged;
}

void* create_server_config(apr_pool_t* p, server_rec*) { return pool_new<ServerConfig>(p); }

void* merge_server_config(apr_pool_t* p, void* parent_cfg, void* child_cfg) {
    const auto* parent = static_cast<const ServerConfig*>(parent_cfg);
    const auto* child = static_cast<const ServerConfig*>(child_cfg);
    auto* merged = pool_new<ServerConfig>(p);
    merged->http10 = inherit(child->http10, parent->http10, -1);
    merged->adaptive = inherit(child->adaptive, parent->adaptive, -1);
    merged->shrink_at_permille = inherit(child->shrink_at_permille, parent->shrink_at_permille, -1);
    merged->close_at_permille = inherit(child->close_at_permille, parent->close_at_permille, -1);
    merged->adaptive_floor = inherit(child->adaptive_floor, parent->adaptive_floor, kUnset);
    merged->sample_interval = inherit(child->sample_interval, parent->sample_interval, kUnset);
    merged->adaptive_queue = inherit(child->adaptive_queue, parent->adaptive_queue, -1);
    merged->drain_spread = inherit(child->drain_spread, parent->drain_spread, kUnset);
    merged->metrics_per_vhost = inherit(child->metrics_per_vhost, parent->metrics_per_vhost, -1);
    merged->metrics_max_vhosts = inherit(child->metrics_max_vhosts, parent->metrics_max_vhosts, -1);
    return merged;
}

namespace {

int check_advertised_timeouts(apr_pool_t*, apr_pool_t*, apr_pool_t* ptemp, server_rec* main_server) {
    int status = OK;
    for (server_rec* s = main_server; s; s = s->next) {
        const auto* conf = static_cast<const DirConfig*>(ap_get_module_config(s->lookup_defaults, &keepalive_module));
        if (conf->advertised_timeout == kUnset) continue;
        const auto problem = keepalive::check_advertised_timeout(conf->advertised_timeout, s->keep_alive_timeout);
        if (!problem) continue;
        const char* where = s->is_virtual ? apr_psprintf(ptemp, "virtual host %s (%s:%d)", s->server_hostname,
                                                         s->defn_name, s->defn_line_number)
                                          : "the main server";
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, nullptr,
                     "mod_keepalive: KeepAliveAdvertisedTimeout in %s: %s", where, problem->c_str());
        status = HTTP_INTERNAL_SERVER_ERROR;
    }
    return status;
}

}  // namespace

void register_config_hooks() {
    ap_hook_check_config(check_advertised_timeouts, nullptr, nullptr, APR_HOOK_MIDDLE);
}

}  // namespace keepalive::httpd
