// A client connection's life as the module follows it: its state created
// when it opens, each request's start (where the idle wait before it is
// set), how each idle wait ended, and why the connection closed.
#ifndef MOD_KEEPALIVE_HTTPD_CONNECTION_H
#define MOD_KEEPALIVE_HTTPD_CONNECTION_H

#include "httpd/version_guard.h"

namespace keepalive::httpd {

void register_connection_hooks();

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_CONNECTION_H
