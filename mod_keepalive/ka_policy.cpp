#include "ka_policy.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "ka_tokens.h"

namespace keepalive {
namespace {

constexpr std::int64_t kMicrosPerSecond = 1000000;
constexpr std::int64_t kMaxSeconds = 2147483647;  // timeout= must fit an int
constexpr std::int64_t kMaxRequestCount = 2147483647;

// httpd's ap_status_drops_connection(): after these the request stream can no
// longer be trusted, so core closes whatever the configuration says.
bool status_drops_connection(int status) {
    switch (status) {
        case 400: case 408: case 411: case 413: case 414:
        case 500: case 501: case 503:
            return true;
        default:
            return false;
    }
}

bool at_least_http11(const ResponseFacts& f) {
    return f.http_major > 1 || (f.http_major == 1 && f.http_minor >= 1);
}

// Core's test is a case-insensitive prefix match on any token (see
// httpd_find_token); the RFC's is an exact list element. Closing on either
// keeps the module's verdict in step with core's and with the RFC.
bool asks_for_close(const ConnectionTokens& tokens) { return tokens.close || tokens.httpd_close; }

// The idle timeout the request's directives ask for.
std::int64_t requested_idle_timeout(const ConnectionLimits& limits, const Settings& settings) {
    return settings.idle_timeout_us.value_or(limits.idle_timeout_us);
}

// The idle timeout after the load-adaptive mode has had its say: unchanged
// below shrink_at, then linearly shorter, down to the floor (or to the
// requested value, if that is shorter still) at close_at.
std::int64_t adapted_idle_timeout(std::int64_t requested, const AdaptiveSettings& a, int occupancy_permille) {
    if (!a.enabled || occupancy_permille <= a.shrink_at_permille || requested <= a.floor_us) return requested;
    const std::int64_t span = a.close_at_permille - a.shrink_at_permille;
    const std::int64_t over = std::min<std::int64_t>(occupancy_permille - a.shrink_at_permille, span);
    return requested - (requested - a.floor_us) * over / span;
}

// Why this response must close the connection, or None. The order puts the
// reason an administrator can act on first when several apply.
CloseReason close_reason(const ConnectionLimits& limits, const Settings& settings, const ResponseFacts& f,
                         const ConnectionTokens& request) {
    const bool opted_in = request.keep_alive;
    const bool http10 = !at_least_http11(f);
    // Core marks the connection closed before it sends the error response
    // that drops it: the status says more than the mark.
    if (f.connection_marked_close) {
        return status_drops_connection(f.status) ? CloseReason::ErrorStatus : CloseReason::MarkedClose;
    }
    if (f.server_stopping) return CloseReason::ServerStopping;
    if (asks_for_close(request)) return CloseReason::ClientClose;
    if (http10 && !opted_in) return CloseReason::Http10NoOptIn;
    if (http10 && !settings.http10) return CloseReason::Http10Refused;
    if (http10 && f.forward_proxy) return CloseReason::Http10Proxy;
    if (f.forced_http10) return CloseReason::ForcedHttp10;
    if (!limits.keep_alive || requested_idle_timeout(limits, settings) <= 0 ||
        (!limits.per_response_idle_timeout && limits.idle_timeout_us <= 0)) {
        return CloseReason::Disabled;
    }
    if (f.nokeepalive_env && !f.via_present) return CloseReason::DisabledByEnv;
    if (f.disabled_by_condition) return CloseReason::DisabledByCondition;
    if (status_drops_connection(f.status)) return CloseReason::ErrorStatus;
    if (f.expecting_100) return CloseReason::ExpectContinue;
    if (f.framing == BodyFraming::Undelimited && http10) return CloseReason::UndelimitedBody;
    if (!f.response_connection.empty() && asks_for_close(scan_connection_tokens(f.response_connection))) {
        return CloseReason::ResponseClose;
    }
    if (settings.adaptive.enabled && f.occupancy_permille >= settings.adaptive.close_at_permille) {
        return CloseReason::LoadShedding;
    }
    const std::int64_t lifetime = settings.max_lifetime_us.value_or(0);
    if (lifetime > 0 && f.connection_age_us >= lifetime) return CloseReason::LifetimeReached;
    // As core: only 0 means unlimited; a negative MaxKeepAliveRequests closes.
    const int max_requests = settings.max_requests.value_or(limits.max_requests);
    if (max_requests != 0 && std::int64_t{max_requests} - f.responses_kept_before <= 0) {
        return CloseReason::BudgetReached;
    }
    return CloseReason::None;
}

std::string format_ms(std::int64_t microseconds) { return std::to_string(microseconds / 1000) + "ms"; }

}  // namespace

const char* reason_name(CloseReason reason) {
    switch (reason) {
        case CloseReason::None: return "none";
        case CloseReason::MarkedClose: return "marked-close";
        case CloseReason::ServerStopping: return "server-stopping";
        case CloseReason::ClientClose: return "client-close";
        case CloseReason::Http10NoOptIn: return "http10-no-optin";
        case CloseReason::Http10Refused: return "http10-refused";
        case CloseReason::Http10Proxy: return "http10-proxy";
        case CloseReason::ForcedHttp10: return "forced-http10";
        case CloseReason::Disabled: return "disabled";
        case CloseReason::DisabledByEnv: return "disabled-by-env";
        case CloseReason::DisabledByCondition: return "disabled-by-condition";
        case CloseReason::ErrorStatus: return "error-status";
        case CloseReason::ExpectContinue: return "expect-100";
        case CloseReason::UndelimitedBody: return "undelimited-body";
        case CloseReason::ResponseClose: return "response-close";
        case CloseReason::BudgetReached: return "budget-reached";
        case CloseReason::LifetimeReached: return "lifetime-reached";
        case CloseReason::LoadShedding: return "load-shedding";
        case CloseReason::IdleTimeout: return "idle-timeout";
        case CloseReason::ClientGone: return "client-gone";
    }
    return "unknown";
}

std::string_view Decision::connection_header() const {
    switch (verdict) {
        case Verdict::Keep: return "Keep-Alive";
        case Verdict::Close: return "close";
        case Verdict::NotApplicable: break;
    }
    return {};
}

namespace {

// Writers for the two formatters below, whose buffers are sized for the
// longest output (static_asserts there), so they need no bounds checks; a
// copy of known length compiles to a few moves.
template <std::size_t N>
char* put(char* out, const char (&text)[N]) {
    std::memcpy(out, text, N - 1);
    return out + N - 1;
}

constexpr std::size_t kMaxIntDigits = 11;  // "-2147483648"

constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Most timeouts and request budgets have one or two digits.
inline char* put(char* out, int value) {
    if (value >= 0 && value < 10) {
        *out = static_cast<char>('0' + value);
        return out + 1;
    }
    if (value >= 10 && value < 100) {
        std::memcpy(out, &kDigitPairs[2 * value], 2);
        return out + 2;
    }
    return std::to_chars(out, out + kMaxIntDigits, value).ptr;
}

}  // namespace

std::size_t format_keep_alive_value(const Decision& d, char (&value)[kKeepAliveValueSize]) {
    static_assert(kKeepAliveValueSize > sizeof("timeout=, max=") + 2 * kMaxIntDigits);
    char* out = value;
    if (d.keep()) {
        out = put(put(out, "timeout="), d.advertised_timeout_s);
        if (d.max_remaining >= 0) out = put(put(out, ", max="), d.max_remaining);
    }
    *out = '\0';
    return static_cast<std::size_t>(out - value);
}

std::size_t format_keep_alive_fields(const Decision& d, char (&fields)[kKeepAliveFieldsSize]) {
    // The longest fields, and the CRLF that ends a header block after them
    // (the adapter writes both into a buffer of this size).
    static_assert(kKeepAliveFieldsSize >= sizeof("Keep-Alive: timeout=, max=") - 1 + 2 * kMaxIntDigits +
                                              sizeof("\r\nConnection: Keep-Alive\r\n") - 1 + 2);
    if (!d.keep()) return 0;
    char* out = put(put(fields, "Keep-Alive: timeout="), d.advertised_timeout_s);
    if (d.max_remaining >= 0) out = put(put(out, ", max="), d.max_remaining);
    out = put(out, "\r\nConnection: Keep-Alive\r\n");
    return static_cast<std::size_t>(out - fields);
}

std::string Decision::keep_alive_header() const {
    char value[kKeepAliveValueSize];
    const std::size_t length = format_keep_alive_value(*this, value);
    return std::string(value, length);
}

std::size_t format_outcome_note(const Decision& d, bool kept, char (&note)[kOutcomeNoteSize]) {
    static_assert(kOutcomeNoteSize > sizeof("keep timeout= max=") + 2 * kMaxIntDigits);
    char* out = note;
    if (kept) {
        out = put(put(out, "keep timeout="), d.advertised_timeout_s);
        if (d.max_remaining >= 0) out = put(put(out, " max="), d.max_remaining);
    } else {
        const char* reason = reason_name(d.reason);
        const std::size_t length = std::min(std::strlen(reason), kOutcomeNoteSize - sizeof("close "));
        out = put(out, "close ");
        std::memcpy(out, reason, length);
        out += length;
    }
    *out = '\0';
    return static_cast<std::size_t>(out - note);
}

Decision decide(const ConnectionLimits& limits, const Settings& settings, const ResponseFacts& facts) {
    Decision d;
    if (facts.multiplexed || facts.headerless) return d;

    const ConnectionTokens request = scan_connection_tokens(facts.request_connection);
    d.client_opted_in = request.keep_alive;
    d.httpd_sees_keep_alive = request.httpd_keep_alive;
    d.reason = close_reason(limits, settings, facts, request);
    d.verdict = d.reason == CloseReason::None ? Verdict::Keep : Verdict::Close;
    if (!d.keep()) return d;

    // Under event the server waits the virtual host's time whatever a
    // directory asks: advertise no more than that, and no more than asked.
    const std::int64_t requested =
        adapted_idle_timeout(requested_idle_timeout(limits, settings), settings.adaptive, facts.occupancy_permille);
    d.idle_timeout_us = limits.per_response_idle_timeout ? requested : limits.idle_timeout_us;
    d.advertised_timeout_us = std::min(requested, d.idle_timeout_us);
    if (settings.advertised_timeout_us) {
        d.advertised_timeout_us = std::min(d.advertised_timeout_us, *settings.advertised_timeout_us);
    }
    d.advertised_timeout_s = static_cast<int>(d.advertised_timeout_us / kMicrosPerSecond);
    const int max_requests = settings.max_requests.value_or(limits.max_requests);
    d.max_remaining = max_requests != 0 ? max_requests - facts.responses_kept_before : -1;
    switch (settings.header_mode) {
        case HeaderMode::Always: d.send_header = true; break;
        case HeaderMode::OnRequest: d.send_header = d.client_opted_in; break;
        case HeaderMode::Never: d.send_header = false; break;
    }
    return d;
}

std::optional<std::string> check_timeout(std::int64_t microseconds) {
    if (microseconds < 0) return std::string("must not be negative");
    if (microseconds / kMicrosPerSecond > kMaxSeconds) return "must be at most " + std::to_string(kMaxSeconds) + "s";
    return std::nullopt;
}

std::optional<std::string> check_lifetime(std::int64_t microseconds) { return check_timeout(microseconds); }

std::optional<std::string> check_advertised_timeout(std::int64_t advertised_us, std::int64_t idle_us) {
    if (advertised_us <= idle_us) return std::nullopt;
    return "advertised " + format_ms(advertised_us) + " is above the idle timeout the server enforces (" +
           format_ms(idle_us) + "): clients would be told to wait longer than the server does";
}

std::optional<int> parse_request_count(std::string_view text) {
    if (text.empty() || text.size() > 10) return std::nullopt;
    std::int64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    if (value > kMaxRequestCount) return std::nullopt;
    return static_cast<int>(value);
}

std::optional<int> parse_percentage(std::string_view text) {
    if (!text.empty() && text.back() == '%') text.remove_suffix(1);
    const auto value = parse_request_count(text);
    if (!value || *value > 100) return std::nullopt;
    return *value * 10;
}

std::optional<std::string> check_adaptive_thresholds(int shrink_at_permille, int close_at_permille) {
    if (shrink_at_permille < close_at_permille) return std::nullopt;
    return "the occupancy where idle timeouts start to shrink (" + std::to_string(shrink_at_permille / 10) +
           "%) must be below the one where connections are closed (" + std::to_string(close_at_permille / 10) + "%)";
}

std::optional<HeaderMode> parse_header_mode(std::string_view text) {
    if (ascii_iequals(text, "Always")) return HeaderMode::Always;
    if (ascii_iequals(text, "OnRequest")) return HeaderMode::OnRequest;
    if (ascii_iequals(text, "Never")) return HeaderMode::Never;
    return std::nullopt;
}

}  // namespace keepalive
