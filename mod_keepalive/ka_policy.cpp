#include "ka_policy.h"

#include <charconv>

#include "ka_tokens.h"

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
bool asks_for_close(std::string_view connection_field) {
    return list_has_token(connection_field, "close") || httpd_find_token(connection_field, "close");
}

// Why this response must close the connection, or None. The order puts the
// reason an administrator can act on first when several apply.
CloseReason close_reason(const ConnectionLimits& limits, const ResponseFacts& f, bool opted_in) {
    if (f.connection_marked_close) return CloseReason::MarkedClose;
    if (f.server_stopping) return CloseReason::ServerStopping;
    if (asks_for_close(f.request_connection)) return CloseReason::ClientClose;
    if (!at_least_http11(f) && !opted_in) return CloseReason::Http10NoOptIn;
    if (f.forced_http10) return CloseReason::ForcedHttp10;
    if (!limits.keep_alive || limits.idle_timeout_us <= 0) return CloseReason::Disabled;
    if (f.nokeepalive_env && !f.via_present) return CloseReason::DisabledByEnv;
    if (status_drops_connection(f.status)) return CloseReason::ErrorStatus;
    if (f.expecting_100) return CloseReason::ExpectContinue;
    if (f.framing == BodyFraming::Undelimited && !at_least_http11(f)) return CloseReason::UndelimitedBody;
    if (httpd_find_token(f.response_connection, "close") || list_has_token(f.response_connection, "close")) {
        return CloseReason::ResponseClose;
    }
    // As core: only 0 means unlimited; a negative MaxKeepAliveRequests closes.
    if (limits.max_requests != 0 && limits.max_requests - f.responses_kept_before <= 0) {
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
        case CloseReason::ForcedHttp10: return "forced-http10";
        case CloseReason::Disabled: return "disabled";
        case CloseReason::DisabledByEnv: return "disabled-by-env";
        case CloseReason::ErrorStatus: return "error-status";
        case CloseReason::ExpectContinue: return "expect-100";
        case CloseReason::UndelimitedBody: return "undelimited-body";
        case CloseReason::ResponseClose: return "response-close";
        case CloseReason::BudgetReached: return "budget-reached";
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

void Decision::format_keep_alive_header() {
    header_length_ = 0;
    if (!keep()) return;
    char* out = header_.data();
    char* const end = out + header_.size();
    auto append = [&](std::string_view text) {
        for (char c : text) {
            if (out < end) *out++ = c;
        }
    };
    append("timeout=");
    out = std::to_chars(out, end, advertised_timeout_s).ptr;
    if (max_remaining >= 0) {
        append(", max=");
        out = std::to_chars(out, end, max_remaining).ptr;
    }
    header_length_ = static_cast<std::size_t>(out - header_.data());
}

Decision decide(const ConnectionLimits& limits, const ResponseFacts& facts) {
    Decision d;
    if (facts.multiplexed || facts.headerless) return d;

    d.client_opted_in = list_has_token(facts.request_connection, "keep-alive");
    d.reason = close_reason(limits, facts, d.client_opted_in);
    d.verdict = d.reason == CloseReason::None ? Verdict::Keep : Verdict::Close;
    if (!d.keep()) return d;

    d.idle_timeout_us = limits.idle_timeout_us;
    d.advertised_timeout_s = static_cast<int>(limits.idle_timeout_us / kMicrosPerSecond);
    d.max_remaining = limits.max_requests != 0 ? limits.max_requests - facts.responses_kept_before : -1;
    d.format_keep_alive_header();
    return d;
}

}  // namespace keepalive
