// The httpd versions mod_keepalive builds against: 2.4.49 and later 2.4
// releases. Included by every adapter header, so an unsupported httpd stops
// the build at its first file, with this message rather than an obscure one.
//
//  - 2.4.49 (module magic 20120211.116) added conn_rec->outgoing, which tells
//    mod_proxy's backend connections apart from clients' (connection.cpp).
//  - Only the 2.4 branch (module magic major 20120211) decides keep-alive in
//    ap_set_keepalive() inside HTTP_HEADER, where the module acts
//    (header_takeover_24.cpp). httpd trunk decides in HTTP1_RESPONSE_OUT
//    with ap_h1_set_keepalive(); supporting it needs another takeover file.
#ifndef MOD_KEEPALIVE_HTTPD_VERSION_GUARD_H
#define MOD_KEEPALIVE_HTTPD_VERSION_GUARD_H

#include "ap_mmn.h"

#if MODULE_MAGIC_NUMBER_MAJOR != 20120211
#error "mod_keepalive supports Apache httpd 2.4 only (module magic number major 20120211); these httpd headers are of another branch"
#endif

#if !AP_MODULE_MAGIC_AT_LEAST(20120211, 116)
#error "mod_keepalive needs Apache httpd 2.4.49 or later (module magic number 20120211.116); these httpd headers are older"
#endif

#endif  // MOD_KEEPALIVE_HTTPD_VERSION_GUARD_H
