// Parsing and checking of directive arguments, with the messages that
// configtest prints. The httpd adapter (httpd/config.cpp) calls these from
// its directive handlers; the fuzzers call them with any bytes.
//
// Part of the policy core: no httpd or APR headers here.
#ifndef MOD_KEEPALIVE_CORE_DIRECTIVE_ARGS_H
#define MOD_KEEPALIVE_CORE_DIRECTIVE_ARGS_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/defaults.h"

namespace keepalive {

// Directive arguments. Each returns an error message naming the problem, or
// nothing when the value is acceptable.
std::optional<std::string> check_timeout(std::int64_t microseconds);
std::optional<std::string> check_lifetime(std::int64_t microseconds);
std::optional<std::string> check_advertised_timeout(std::int64_t advertised_us, std::int64_t idle_us);
// "0".."2147483647", digits only; nothing on anything else.
std::optional<int> parse_request_count(std::string_view text);
std::optional<HeaderMode> parse_header_mode(std::string_view text);
// "60%" or "60": a whole percentage from 0 to 100, as permille.
std::optional<int> parse_percentage(std::string_view text);
std::optional<std::string> check_adaptive_thresholds(int shrink_at_permille, int close_at_permille);

}  // namespace keepalive

#endif  // MOD_KEEPALIVE_CORE_DIRECTIVE_ARGS_H
