// What the counters show: "SetHandler keepalive-status" (Prometheus text,
// or JSON with ?format=json) and a section of mod_status's /server-status.
#ifndef MOD_KEEPALIVE_HTTPD_METRICS_ENDPOINT_H
#define MOD_KEEPALIVE_HTTPD_METRICS_ENDPOINT_H

#include "httpd/version_guard.h"

namespace keepalive::httpd {

void register_metrics_endpoint_hooks();

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_METRICS_ENDPOINT_H
