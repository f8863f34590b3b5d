// Just before core decides a response's persistence (inside HTTP_HEADER):
// let core decide alone where the policy would decide as core does, or have
// the policy decide and arrange for core to carry the decision out.
#ifndef MOD_KEEPALIVE_HTTPD_POLICY_PATH_H
#define MOD_KEEPALIVE_HTTPD_POLICY_PATH_H

#include "httpd.h"
#include "util_filter.h"

#include "httpd/connection_state.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

// For each response (an error document after an error bucket is a second
// one), from the module's HTTP_HEADER with its filter `f` and brigade `bb`.
void before_core(ConnectionState* cs, ap_filter_t* f, apr_bucket_brigade* bb);

// st->decision from st's limits, settings and facts; when that keeps the
// connection, asks the MPM whether the server is stopping, which closes it.
void decide_then_ask_if_stopping(ResponseState* st);

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_POLICY_PATH_H
