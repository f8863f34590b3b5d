// The keep-alive policy: value types in, one decision out.
//
// This is where every rule lives. It includes no httpd or APR header, so the
// unit tests drive it directly; the Apache adapter (mod_keepalive.cpp) only
// gathers the facts below from request_rec/conn_rec and applies the decision.
#ifndef MOD_KEEPALIVE_KA_POLICY_H
#define MOD_KEEPALIVE_KA_POLICY_H

#include <array>
#include <cstdint>
#include <string_view>

namespace keepalive {

// What the server will actually enforce for the connection after this
// response: core's KeepAlive, KeepAliveTimeout and MaxKeepAliveRequests as
// they apply to the request's virtual host.
struct ConnectionLimits {
    bool keep_alive = true;                   // KeepAlive On|Off
    std::int64_t idle_timeout_us = 5000000;  // the idle wait the MPM enforces
    int max_requests = 100;                   // MaxKeepAliveRequests; 0 = unlimited
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
    bool server_stopping = false;    // graceful stop or restart under way
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
    ForcedHttp10,    // force-response-1.0
    Disabled,        // KeepAlive Off or a zero timeout
    DisabledByEnv,   // nokeepalive environment variable
    ErrorStatus,     // a status after which httpd drops the connection
    ExpectContinue,  // 100-continue never sent: the body may still be coming
    UndelimitedBody, // no length and no chunking: the close delimits the body
    ResponseClose,   // the handler itself asked for "Connection: close"
    BudgetReached,   // MaxKeepAliveRequests used up
};

const char* reason_name(CloseReason reason);

struct Decision {
    Verdict verdict = Verdict::NotApplicable;
    CloseReason reason = CloseReason::None;
    bool client_opted_in = false;  // the request carried the keep-alive token
    std::int64_t idle_timeout_us = 0;
    int advertised_timeout_s = 0;  // idle timeout rounded down, never up
    int max_remaining = -1;        // requests left, the value of max=; -1 = unlimited

    bool keep() const { return verdict == Verdict::Keep; }

    // "timeout=5, max=99" (or "timeout=5" when unlimited); empty unless keep().
    std::string_view keep_alive_header() const { return {header_.data(), header_length_}; }
    // "Keep-Alive" or "close"; empty when not applicable.
    std::string_view connection_header() const;

    // Fills the Keep-Alive value from the fields above; decide() calls it.
    void format_keep_alive_header();

private:
    std::array<char, 48> header_{};
    std::size_t header_length_ = 0;
};

// The decision for one response. Pure and cheap: no allocation.
Decision decide(const ConnectionLimits& limits, const ResponseFacts& facts);

}  // namespace keepalive

#endif
