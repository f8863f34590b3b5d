// Every default of mod_keepalive, in one place.
//
// A directive left unset takes its value from here or, where the module's
// directive stands for one of core's, from core's own setting (KeepAlive,
// KeepAliveTimeout, MaxKeepAliveRequests): those fall back to core, so that
// a configuration without the module's directives behaves as core does. The
// directive reference (docs/directives.md) quotes these values.
//
// Part of the policy core: no httpd or APR headers here.
#ifndef MOD_KEEPALIVE_CORE_DEFAULTS_H
#define MOD_KEEPALIVE_CORE_DEFAULTS_H

#include <cstdint>

namespace keepalive {

// When the Keep-Alive header is sent on a persistent response
// (KeepAliveHeader); declared here so that its default sits with the others.
enum class HeaderMode {
    Always,     // on every persistent HTTP/1.x response
    OnRequest,  // only when the request carried the keep-alive token (core's way)
    Never,
};

namespace defaults {

// Core's own defaults (KeepAliveTimeout 5, MaxKeepAliveRequests 100), which
// the policy assumes when it is told nothing else (ConnectionLimits).
constexpr std::int64_t kCoreIdleTimeoutUs = 5000000;
constexpr int kCoreMaxRequests = 100;

// KeepAliveHeader Always: every persistent HTTP/1.x response says
// "Keep-Alive: timeout=T, max=M", the promise the module keeps.
constexpr HeaderMode kHeaderMode = HeaderMode::Always;

// KeepAliveIdleTimeout, KeepAliveAdvertisedTimeout and KeepAliveMaxRequests
// default to core's values for the virtual host; KeepAliveMaxLifetime and
// KeepAliveDisableIf to none.

// KeepAliveMaxLifetimeJitter 10%: each connection's lifetime is spread
// below KeepAliveMaxLifetime by up to this share (gRPC spreads
// MAX_CONNECTION_AGE by +-10%), so that connections opened together do not
// all reconnect together.
constexpr int kMaxLifetimeJitterPermille = 100;

// KeepAliveHTTP10 On: HTTP/1.0 clients that opt in get keep-alive, as in core.
constexpr bool kHttp10 = true;

// KeepAliveAdaptive Off; when On, KeepAliveAdaptiveThresholds 50% 75% and
// KeepAliveAdaptiveFloor 2s (as benchmarked: bench/RESULTS.md).
constexpr bool kAdaptive = false;
constexpr int kAdaptiveShrinkAtPermille = 500;
constexpr int kAdaptiveCloseAtPermille = 750;
constexpr std::int64_t kAdaptiveFloorUs = 2000000;

// KeepAliveAdaptiveInterval 10ms: how often a child samples the scoreboard;
// it accepts nothing shorter than 1ms.
constexpr std::int64_t kAdaptiveSampleIntervalUs = 10000;
// KeepAliveAdaptiveQueue On: where the accept queues can be read, clients
// waiting in them close responses, and worker occupancy only shortens
// idle timeouts (core/pressure.h).
constexpr bool kAdaptiveQueue = true;
constexpr std::int64_t kAdaptiveSampleIntervalMinUs = 1000;

// KeepAliveMetricsPerVhost On: every virtual host that served a request has
// series of its own on the keepalive-status endpoint.
constexpr bool kMetricsPerVhost = true;

// An idle connection the server closed more than this before the timeout its
// last response advertised is counted as an early close, not idle-timeout.
// The idle time is measured from the request's arrival (r->request_time) to
// the close, never shorter than the wait the MPM enforced: the tolerance is
// for the clock only.
constexpr std::int64_t kEarlyCloseToleranceUs = 250000;

}  // namespace defaults
}  // namespace keepalive

#endif
