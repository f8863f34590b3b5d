// A drain: ahead of a restart or stop, the server stops keeping connections
// (keepalivectl, the keepalive-drain handler). What a drain means for one
// response, as pure arithmetic on microsecond times; the httpd adapter
// (httpd/drain.cpp) keeps the schedule in shared memory.
//
// From the moment a drain starts, each connection is given a moment, spread
// evenly over the window, after which its responses close it: clients then
// reconnect over the window rather than all in one instant. Until its
// moment a connection is still kept, but never promised an idle wait that
// outlasts the drain. The drain is complete once the longest idle timeout
// the server promised before it (or the window, if longer) has passed: no
// idle connection that a client still trusts is left for a restart to cut.
//
// Part of the policy core: no httpd or APR headers here.
#ifndef MOD_KEEPALIVE_CORE_DRAIN_H
#define MOD_KEEPALIVE_CORE_DRAIN_H

#include <cstdint>
#include <string>

namespace keepalive {

enum class DrainState { Idle, Draining, Drained };

const char* drain_state_name(DrainState state);

struct DrainSchedule {
    std::int64_t started_us = 0;       // when the drain began; 0: no drain
    std::int64_t spread_us = -1;       // KeepAliveDrainSpread; -1 (auto): the longest idle timeout
    std::int64_t longest_idle_us = 0;  // the longest idle wait promised before (and during) it

    bool active() const { return started_us != 0; }
    std::int64_t window_us() const;      // over which connections are given their moments
    std::int64_t complete_at_us() const;  // started + the longer of the window and longest_idle
    DrainState state_at(std::int64_t now_us) const;
    // Until complete: how long, never negative; 0 once complete or when idle.
    std::int64_t remaining_us(std::int64_t now_us) const;
};

// What a drain means for the response about to be sent on a connection.
struct DrainVerdict {
    bool close = false;           // the connection's moment has come: close it
    std::int64_t cap_us = -1;     // otherwise: promise no longer idle wait than this; -1: no drain
};

// `connection_key` identifies the connection (any bits that differ between
// connections: the adapter uses its accept time and address); its moment
// is a hash of it over the window, the same for all of its responses.
DrainVerdict drain_verdict(const DrainSchedule& schedule, std::int64_t now_us, std::uint64_t connection_key);

// What the keepalive-drain handler answers: "state: draining" and the
// like, one "key: value" line each (docs/directives.md, keepalivectl).
std::string render_drain_status(const DrainSchedule& schedule, std::int64_t now_us);
// The drain's gauges, in Prometheus text format and as a JSON member
// ("drain":{...}) for the keepalive-status endpoint.
std::string render_drain_prometheus(const DrainSchedule& schedule, std::int64_t now_us);
std::string render_drain_json_member(const DrainSchedule& schedule, std::int64_t now_us);

}  // namespace keepalive

#endif  // MOD_KEEPALIVE_CORE_DRAIN_H
