// The keep-alive policy: value types in, one decision out.
//
// This is where every rule lives. It includes no httpd or APR header, so the
// unit tests and fuzzers drive it directly; the httpd adapter
// (mod_keepalive/httpd/) only gathers the facts below from request_rec and
// conn_rec and makes httpd carry the decision out.
#ifndef MOD_KEEPALIVE_CORE_POLICY_H
#define MOD_KEEPALIVE_CORE_POLICY_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/defaults.h"

namespace keepalive {

// Core's per-server values as they apply to the request's virtual host:
// KeepAlive, KeepAliveTimeout (as the MPM enforces it) and MaxKeepAliveRequests.
struct ConnectionLimits {
    bool keep_alive = true;  // KeepAlive On|Off
    std::int64_t idle_timeout_us = defaults::kCoreIdleTimeoutUs;  // the idle wait the MPM enforces
    int max_requests = defaults::kCoreMaxRequests;                // MaxKeepAliveRequests; 0 = unlimited
    // Whether the server can wait a different time after each response
    // (prefork, worker: the socket timeout) or only the virtual host's
    // (event: one keep-alive queue per timeout, fixed at start-up).
    bool per_response_idle_timeout = true;
};

// The load-adaptive mode (KeepAliveAdaptive): as the pressure (worker
// occupancy, waiting clients, and under event the responding process's
// own: core/pressure.h) rises past shrink_at the idle timeout shrinks
// linearly toward floor, reached at close_at; from close_at on of the
// shedding pressure, responses close their connection.
struct AdaptiveSettings {
    bool enabled = defaults::kAdaptive;
    int shrink_at_permille = defaults::kAdaptiveShrinkAtPermille;
    int close_at_permille = defaults::kAdaptiveCloseAtPermille;
    std::int64_t floor_us = defaults::kAdaptiveFloorUs;
};

// mod_keepalive's own directives, merged for the request. Unset values fall
// back to core's (ConnectionLimits), so with none set nothing changes but
// the header.
struct Settings {
    HeaderMode header_mode = defaults::kHeaderMode;
    std::optional<std::int64_t> idle_timeout_us;        // KeepAliveIdleTimeout
    std::optional<std::int64_t> advertised_timeout_us;  // KeepAliveAdvertisedTimeout
    std::optional<int> max_requests;                    // KeepAliveMaxRequests
    std::optional<std::int64_t> max_lifetime_us;        // KeepAliveMaxLifetime
    int max_lifetime_jitter_permille = defaults::kMaxLifetimeJitterPermille;  // KeepAliveMaxLifetimeJitter
    bool http10 = defaults::kHttp10;                    // KeepAliveHTTP10
    AdaptiveSettings adaptive;                          // KeepAliveAdaptive*
};

// How the response body is delimited. Before core's CONTENT_LENGTH filter has
// run the length may not be known yet; the policy then does not close for it.
enum class BodyFraming { Delimited, Undelimited, Unknown };

// Everything about one response that bears on persistence.
struct ResponseFacts {
    int http_major = 1;  // the protocol core will answer with (downgrade-1.0 applied)
    int http_minor = 1;
    bool multiplexed = false;  // HTTP/2 stream: connection headers are forbidden
    bool headerless = false;   // HTTP/0.9: no header block at all

    std::string_view request_connection;   // all request Connection lines, joined
    std::string_view response_connection;  // Connection set by the handler or a filter

    int status = 200;
    bool head_request = false;
    BodyFraming framing = BodyFraming::Unknown;
    bool expecting_100 = false;      // client still waits for 100-continue
    bool nokeepalive_env = false;    // SetEnv/BrowserMatch nokeepalive
    bool via_present = false;        // request came through a proxy (Via)
    bool forced_http10 = false;      // force-response-1.0 on an HTTP/1.0 request
    bool connection_marked_close = false;  // something already doomed the connection
    int responses_kept_before = 0;   // keep-alive responses already sent on it
    std::int64_t connection_age_us = 0;  // since the connection was accepted
    // Bits that differ between connections (the adapter uses when each was
    // accepted): what spreads lifetimes (lifetime_for()) and a drain's
    // closes (core/drain.h) over connections, the same for all of a
    // connection's responses.
    std::uint64_t connection_key = 0;
    bool forward_proxy = false;      // served as a forward proxy (ProxyRequests On)
    bool disabled_by_condition = false;  // a KeepAliveDisableIf expression was true
    // The adaptive mode's pressures (core/pressure.h), -1 unknown: the one
    // that shrinks idle timeouts and the one that closes at close_at.
    int pressure_permille = -1;
    int shedding_pressure_permille = -1;
    bool server_stopping = false;    // graceful stop or restart under way
    // A drain under way (core/drain.h): this connection's moment in it has
    // come, or else the longest idle wait it leaves room for (-1: no drain).
    bool drain_closes = false;
    std::int64_t drain_cap_us = -1;
};

enum class Verdict { NotApplicable, Keep, Close };

// Why a connection closes after this response. The names (reason_name) are
// what the log and the counters show.
enum class CloseReason {
    None,
    MarkedClose,     // the connection was already doomed (read error, earlier module)
    ServerStopping,  // graceful stop or restart
    ClientClose,     // the request's Connection carried "close"
    Http10NoOptIn,   // HTTP/1.0 without "Connection: keep-alive"
    Http10Refused,   // HTTP/1.0 opted in, but KeepAliveHTTP10 Off
    Http10Proxy,     // forward proxy with an HTTP/1.0 client (RFC 9112 section 9.3)
    ForcedHttp10,    // force-response-1.0
    Disabled,        // KeepAlive Off or a zero timeout
    DisabledByEnv,   // nokeepalive environment variable
    DisabledByCondition,  // KeepAliveDisableIf
    ErrorStatus,     // a status after which httpd drops the connection
    ExpectContinue,  // 100-continue never sent: the body may still be coming
    UndelimitedBody, // no length and no chunking: the close delimits the body
    ResponseClose,   // the handler itself asked for "Connection: close"
    BudgetReached,   // MaxKeepAliveRequests used up
    LifetimeReached, // KeepAliveMaxLifetime passed
    LoadShedding,    // the load-adaptive mode closed it to free a worker
    Drain,           // a drain (keepalivectl) ahead of a restart or stop
    // How a connection ends when its last response kept it:
    IdleTimeout,     // the server closed it after waiting the idle timeout
    ClientGone,      // the client closed it (or it broke) while idle
    // The server closed it while idle, before the timeout its last response
    // advertised (closed_early()):
    EarlyCloseBusy,      // not stopping: under event, the listener closing
                         // idle connections of a process with no idle worker
    EarlyCloseStopping,  // the process was stopping (graceful restart or stop)
};

constexpr std::size_t kCloseReasonCount = static_cast<std::size_t>(CloseReason::EarlyCloseStopping) + 1;

const char* reason_name(CloseReason reason);

// Where `key` falls in [0, 1), in 1/65536ths: keys that differ in a few
// low bits (accept times microseconds apart) land far apart.
std::uint32_t key_fraction(std::uint64_t key);

// The lifetime of the connection with `key`: `lifetime_us` less up to
// `jitter_permille` of it, spread evenly over connections. Never above the
// configured lifetime, which stays a maximum.
std::int64_t lifetime_for(std::int64_t lifetime_us, int jitter_permille, std::uint64_t key);

// Whether a connection the server closed after `idle_us` of idleness was
// closed before the `advertised_s` seconds its last response advertised
// (the Keep-Alive header's timeout=, rounded down as sent). The idle time is
// measured from no later than the idle wait began to no earlier than the
// close, so a close at the timeout is never early; the tolerance
// (defaults::kEarlyCloseToleranceUs) absorbs the clock's granularity.
bool closed_early(std::int64_t idle_us, int advertised_s);

// The reason for an early close: whether the server (the process that
// closed) was stopping when it closed.
inline CloseReason early_close_reason(bool stopping) {
    return stopping ? CloseReason::EarlyCloseStopping : CloseReason::EarlyCloseBusy;
}

struct Decision {
    Verdict verdict = Verdict::NotApplicable;
    CloseReason reason = CloseReason::None;
    bool client_opted_in = false;  // the request carried the keep-alive token
    // httpd's own matcher (httpd_find_token) finds the keep-alive token in
    // the request, so core itself writes Keep-Alive on a kept response.
    bool httpd_sees_keep_alive = false;
    bool send_header = false;      // a Keep-Alive header goes on this response
    std::int64_t idle_timeout_us = 0;       // how long the server will wait
    std::int64_t advertised_timeout_us = 0;  // never above idle_timeout_us
    int advertised_timeout_s = 0;  // the above rounded down, never up
    int max_remaining = -1;        // requests left, the value of max=; -1 = unlimited

    bool keep() const { return verdict == Verdict::Keep; }

    // For tests and tools; the request path uses wire_format.h's writers.
    // "timeout=5, max=99" (or "timeout=5" when unlimited); empty unless the
    // connection is kept, whether or not send_header says to send it.
    std::string keep_alive_header() const;
    // "Keep-Alive" or "close"; empty when not applicable.
    std::string_view connection_header() const;
};

// The decision for one response. Pure and cheap: no allocation.
Decision decide(const ConnectionLimits& limits, const Settings& settings, const ResponseFacts& facts);

}  // namespace keepalive

#endif  // MOD_KEEPALIVE_CORE_POLICY_H
