#include "core/policy.h"

#include <algorithm>

#include "core/connection_tokens.h"
#include "core/pressure.h"

namespace keepalive {
namespace {

constexpr std::int64_t kMicrosPerSecond = 1000000;

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
    if (f.drain_closes) return CloseReason::Drain;
    if (settings.adaptive.enabled && f.shedding_pressure_permille >= settings.adaptive.close_at_permille) {
        return CloseReason::LoadShedding;
    }
    const std::int64_t lifetime = settings.max_lifetime_us.value_or(0);
    if (lifetime > 0 &&
        f.connection_age_us >= lifetime_for(lifetime, settings.max_lifetime_jitter_permille, f.connection_key)) {
        return CloseReason::LifetimeReached;
    }
    // As core: only 0 means unlimited; a negative MaxKeepAliveRequests closes.
    const int max_requests = settings.max_requests.value_or(limits.max_requests);
    if (max_requests != 0 && std::int64_t{max_requests} - f.responses_kept_before <= 0) {
        return CloseReason::BudgetReached;
    }
    return CloseReason::None;
}


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
        case CloseReason::Drain: return "drain";
        case CloseReason::IdleTimeout: return "idle-timeout";
        case CloseReason::ClientGone: return "client-gone";
        case CloseReason::EarlyCloseBusy: return "early-close-busy";
        case CloseReason::EarlyCloseStopping: return "early-close-stopping";
    }
    return "unknown";
}

std::uint32_t key_fraction(std::uint64_t key) {
    // splitmix64's finaliser.
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return static_cast<std::uint32_t>(key >> 48);
}

std::int64_t lifetime_for(std::int64_t lifetime_us, int jitter_permille, std::uint64_t key) {
    if (lifetime_us <= 0 || jitter_permille <= 0) return lifetime_us;
    const int jitter = std::min(jitter_permille, 1000);
    // The spread in whole microseconds first, then its share: no overflow
    // for any lifetime the directive accepts.
    const std::int64_t spread = lifetime_us / 1000 * jitter + lifetime_us % 1000 * jitter / 1000;
    return lifetime_us - spread / 65536 * key_fraction(key) - spread % 65536 * key_fraction(key) / 65536;
}

bool closed_early(std::int64_t idle_us, int advertised_s) {
    return idle_us + defaults::kEarlyCloseToleranceUs < static_cast<std::int64_t>(advertised_s) * kMicrosPerSecond;
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
        adapted_idle_timeout(requested_idle_timeout(limits, settings), settings.adaptive, facts.pressure_permille);
    d.idle_timeout_us = limits.per_response_idle_timeout ? requested : limits.idle_timeout_us;
    d.advertised_timeout_us = std::min(requested, d.idle_timeout_us);
    if (settings.advertised_timeout_us) {
        d.advertised_timeout_us = std::min(d.advertised_timeout_us, *settings.advertised_timeout_us);
    }
    if (facts.drain_cap_us >= 0) {
        // A drain leaves room for no idle wait past its end: promise less,
        // or close when less than the smallest promise (1 s) is left.
        if (limits.per_response_idle_timeout) d.idle_timeout_us = std::min(d.idle_timeout_us, facts.drain_cap_us);
        d.advertised_timeout_us = std::min(d.advertised_timeout_us, facts.drain_cap_us);
        if (d.advertised_timeout_us < kMicrosPerSecond) {
            Decision closed;
            closed.verdict = Verdict::Close;
            closed.reason = CloseReason::Drain;
            closed.client_opted_in = d.client_opted_in;
            closed.httpd_sees_keep_alive = d.httpd_sees_keep_alive;
            return closed;
        }
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

}  // namespace keepalive
