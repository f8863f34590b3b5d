// Parsing of HTTP list fields such as Connection (RFC 9110 section 5.6.1).
//
// Part of the policy core: no httpd or APR headers here.
#ifndef MOD_KEEPALIVE_CORE_CONNECTION_TOKENS_H
#define MOD_KEEPALIVE_CORE_CONNECTION_TOKENS_H

#include <string>
#include <string_view>

namespace keepalive {

// ASCII case-insensitive equality, as HTTP compares tokens.
bool ascii_iequals(std::string_view a, std::string_view b);

// True when `field`, a comma-separated list such as a Connection header value
// (several header lines joined with ", " count as one list), contains `token`.
// Comparison is case-insensitive; optional whitespace around elements and
// empty elements are ignored. Anything that is not a plain token (a quoted
// string, a stray parameter) never matches, so odd bytes cannot forge a match.
bool list_has_token(std::string_view field, std::string_view token);

// Mirrors httpd's ap_find_token() (server/util.c) exactly, so the policy can
// predict core's own verdict: the line is split at every non-token character
// (not only commas), and an element matches when it is a case-insensitive
// *prefix* of `token` ("clo" finds "close"). Core decides with this; the
// module never keeps a connection that core would close because of it.
bool httpd_find_token(std::string_view line, std::string_view token);

// What a request's or response's Connection field says about persistence,
// found in one pass each way: the elements "close" and "keep-alive" as an
// RFC 9110 list holds them (list_has_token), and as httpd's ap_find_token()
// matches them (httpd_find_token), which is how core decides.
struct ConnectionTokens {
    bool close = false;
    bool keep_alive = false;
    bool httpd_close = false;
    bool httpd_keep_alive = false;
};
ConnectionTokens scan_connection_tokens(std::string_view field);

// `field` without any element equal to `token` (case-insensitive), the rest
// rejoined with ", ". Returns an empty string when nothing is left.
std::string list_without_token(std::string_view field, std::string_view token);

}  // namespace keepalive

#endif
