// mod_keepalive's module record, and where each part of the adapter
// registers its hooks. Each file owns one concern and registers its own:
//
//   header_takeover_24.cpp  the module's HTTP_HEADER in core's place (httpd
//                           2.4's keep-alive decision has no hook), the
//                           KEEPALIVE_STRIP filter; check_config: no other
//                           module holds HTTP_HEADER
//   config.cpp              the directives; check_config: advertised
//                           timeouts against what each vhost enforces
//   settings.cpp            the merged configuration read back (no hooks)
//   policy_path.cpp         inside HTTP_HEADER, before core decides: core
//                           alone, or the policy first
//   observe.cpp             KEEPALIVE_OBSERVE, after core decided: judge,
//                           write the Keep-Alive fields, record
//   log_note.cpp            post_config: whether any log format reads the
//                           keepalive note, so it is made only then
//   connection.cpp          pre_connection: the connection's state;
//                           create_request: the idle wait before each
//                           request; post_config: how the MPM waits;
//                           pre_close_connection: an idle connection
//                           closed before its advertised timeout
//   shared_counters.cpp     post_config: the counters in shared memory
//   metrics_endpoint.cpp    handler: keepalive-status; mod_status's section
//   drain.cpp               post_config: each generation's drain schedule
//                           in shared memory; handler: keepalive-drain
//   load.cpp                child_init: the MPM's limits, for the
//                           load-adaptive mode's occupancy; post_config:
//                           whether the accept queues can be read
//                           (accept_queue.cpp reads them, no hooks)
//
// docs/design.md explains the design and its risks.

#include "httpd.h"
#include "http_config.h"

#include "httpd/config.h"
#include "httpd/connection.h"
#include "httpd/drain.h"
#include "httpd/header_takeover_24.h"
#include "httpd/load.h"
#include "httpd/log_note.h"
#include "httpd/metrics_endpoint.h"
#include "httpd/observe.h"
#include "httpd/shared_counters.h"
#include "httpd/version_guard.h"

#ifndef MOD_KEEPALIVE_VERSION
#error "MOD_KEEPALIVE_VERSION must be defined by the build (see Makefile)"
#endif

namespace keepalive::httpd {
namespace {

// post_config: "mod_keepalive/VERSION" in the Server banner; httpd shows
// module components only with "ServerTokens Full", so the admin decides.
int add_version_component(apr_pool_t* pconf, apr_pool_t*, apr_pool_t*, server_rec*) {
    ap_add_version_component(pconf, "mod_keepalive/" MOD_KEEPALIVE_VERSION);
    return OK;
}

void register_hooks(apr_pool_t*) {
    ap_hook_post_config(add_version_component, nullptr, nullptr, APR_HOOK_MIDDLE);
    // First: when another module holds HTTP_HEADER, configtest says that
    // before anything else (check_config stops at the first hook that fails).
    register_header_takeover_hooks();
    register_config_hooks();
    register_observe_hooks();
    register_log_note_hooks();
    register_connection_hooks();
    register_shared_counter_hooks();
    register_metrics_endpoint_hooks();
    register_drain_hooks();
    register_load_hooks();
}

}  // namespace
}  // namespace keepalive::httpd

extern "C" {
// STANDARD20_MODULE_STUFF spelled out, for the name: httpd names a module
// after the source file that declares it (__FILE__, less its directory), and
// that name is what <IfModule mod_keepalive.c> and mod_info know it by
// (<IfModule keepalive_module> and "apache2 -M" use the symbol). Apache
// modules are C files, and admins write the ".c" form.
__attribute__((visibility("default"))) module AP_MODULE_DECLARE_DATA keepalive_module = {
    MODULE_MAGIC_NUMBER_MAJOR,
    MODULE_MAGIC_NUMBER_MINOR,
    -1,
    "mod_keepalive.c",
    nullptr,
    nullptr,
    MODULE_MAGIC_COOKIE,
    nullptr,
    keepalive::httpd::create_dir_config,
    keepalive::httpd::merge_dir_config,
    keepalive::httpd::create_server_config,
    keepalive::httpd::merge_server_config,
    keepalive::httpd::directives,
    keepalive::httpd::register_hooks,
    // Every virtual host gets its own server config, even without a directive
    // of this module: it carries the host's counter block (shared_counters.cpp).
    AP_MODULE_FLAG_ALWAYS_MERGE,
};
}
