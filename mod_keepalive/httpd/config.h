// mod_keepalive's directives, their per-server and per-directory
// configuration, and the settings they resolve to for a request (defaults
// from core/defaults.h).
#ifndef MOD_KEEPALIVE_HTTPD_CONFIG_H
#define MOD_KEEPALIVE_HTTPD_CONFIG_H

#include "httpd.h"
#include "http_config.h"
#include "ap_expr.h"

#include "core/policy.h"
#include "httpd/version_guard.h"

extern "C" {
extern module AP_MODULE_DECLARE_DATA keepalive_module;
}

namespace keepalive::httpd {

constexpr apr_interval_time_t kUnset = -1;

// Per directory (and per server through its default directory config).
// Unset fields inherit from the enclosing section.
struct DirConfig {
    int header_mode = -1;  // HeaderMode, or -1
    apr_interval_time_t idle_timeout = kUnset;
    apr_interval_time_t advertised_timeout = kUnset;
    apr_interval_time_t max_lifetime = kUnset;
    int max_lifetime_jitter = -1;  // KeepAliveMaxLifetimeJitter, permille, or -1
    int max_requests = -1;
    ap_expr_info_t* disable_if = nullptr;
    // Any of the above set here or in an enclosing section: the policy can
    // then differ from core's (policy_is_cores).
    bool any_set = false;
};

struct ServerConfig {
    int http10 = -1;       // KeepAliveHTTP10: -1 unset, 0 Off, 1 On
    int adaptive = -1;     // KeepAliveAdaptive: -1 unset, 0 Off, 1 On
    int shrink_at_permille = -1;  // KeepAliveAdaptiveThresholds
    int close_at_permille = -1;
    apr_interval_time_t adaptive_floor = kUnset;   // KeepAliveAdaptiveFloor
    apr_interval_time_t sample_interval = kUnset;  // KeepAliveAdaptiveInterval (main server only)
    int adaptive_queue = -1;  // KeepAliveAdaptiveQueue (main server only): -1 unset, 0 Off, 1 On
    apr_interval_time_t drain_spread = kUnset;     // KeepAliveDrainSpread (main server only); kUnset: auto
    int metrics_per_vhost = -1;   // KeepAliveMetricsPerVhost: -1 unset, 0 Off, 1 On
    int metrics_max_vhosts = -1;  // KeepAliveMetricsMaxVhosts (main server only): -1 auto
    int metrics_slot = 0;  // this server's counters (shared_counters.cpp), set at post_config
};

// The module record's configuration entries (module.cpp).
void* create_dir_config(apr_pool_t* p, char* dir);
void* merge_dir_config(apr_pool_t* p, void* parent, void* child);
void* create_server_config(apr_pool_t* p, server_rec* s);
void* merge_server_config(apr_pool_t* p, void* parent, void* child);
extern const command_rec directives[];

// check_config: the checks that need the whole configuration (a server's
// advertised timeout against the idle timeout its virtual host ends up with).
void register_config_hooks();

// The module's settings for this request, and whether its KeepAliveDisableIf
// condition holds.
keepalive::Settings settings_for(request_rec* r, bool* disabled_by_condition);

// A server's KeepAliveAdaptive* settings.
keepalive::AdaptiveSettings adaptive_settings_of(const server_rec* s);

// Whether none of the module's directives applies to this request beyond
// what core itself enforces (KeepAliveIdleTimeout and KeepAliveMaxRequests at
// server level set core's own values): then the policy decides an HTTP/1.1
// response exactly as core does.
bool policy_is_cores(const request_rec* r);

// How often a child walks the scoreboard for the load-adaptive mode.
apr_interval_time_t occupancy_sample_interval();

// KeepAliveAdaptiveQueue: whether the load-adaptive mode reads the accept
// queues (and lets worker occupancy only shorten idle timeouts).
bool accept_queue_wanted();

// KeepAliveDrainSpread: the window a drain spreads its closes over, or -1
// (auto) for the longest idle timeout promised.
apr_interval_time_t drain_spread();

}  // namespace keepalive::httpd

#endif
