// Counters of keep-alive decisions and of why connections closed, and their
// rendering for Prometheus, JSON and mod_status.
//
// Part of the policy core: no httpd or APR headers. The adapter places
// SharedCounters in shared memory, one block per virtual host and one for
// the total, and every child and thread updates them with atomic adds: no
// lock on the request path.
#ifndef MOD_KEEPALIVE_CORE_COUNTERS_H
#define MOD_KEEPALIVE_CORE_COUNTERS_H

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/policy.h"

namespace keepalive {

// Upper bounds (le) of the requests-per-connection histogram; +Inf follows.
constexpr std::array<std::uint64_t, 11> kRequestsPerConnectionBounds = {1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000};
constexpr std::size_t kHistogramSlots = kRequestsPerConnectionBounds.size() + 1;
// Upper bounds of the connection-lifetime histogram, in milliseconds (the
// series says seconds: le="0.1" ... le="3600"); +Inf follows.
constexpr std::array<std::uint64_t, 11> kLifetimeBoundsMs = {100,   500,    1000,   5000,    10000,  30000,
                                                             60000, 300000, 600000, 1800000, 3600000};
constexpr std::size_t kLifetimeSlots = kLifetimeBoundsMs.size() + 1;

// A plain copy of one block of counters.
struct CounterValues {
    std::uint64_t requests = 0;
    std::uint64_t responses_keep = 0;
    std::uint64_t responses_close = 0;
    std::array<std::uint64_t, kCloseReasonCount> connections_closed{};
    std::array<std::uint64_t, kHistogramSlots> requests_per_connection{};  // per slot, not cumulative
    std::uint64_t requests_per_connection_sum = 0;
    std::uint64_t requests_per_connection_count = 0;  // also the lifetime histogram's count
    std::array<std::uint64_t, kLifetimeSlots> connection_lifetime{};  // per slot, not cumulative
    std::uint64_t connection_lifetime_sum_us = 0;

    // Whether anything was counted: a virtual host that has served nothing
    // gets no series, so that a scrape grows with the hosts in use, not with
    // the hosts configured (shared hosting has thousands, most idle).
    bool counted_anything() const;
};

// One block of counters as it lives in shared memory. Zeroed memory is a
// valid, empty block; every member is a lock-free atomic, so processes that
// share the memory can update it concurrently.
struct SharedCounters {
    // Every request decided on is one response kept or closed: requests is
    // their sum (load()), one atomic add per response instead of two.
    std::atomic<std::uint64_t> responses_keep;
    std::atomic<std::uint64_t> responses_close;
    std::array<std::atomic<std::uint64_t>, kCloseReasonCount> connections_closed;
    std::array<std::atomic<std::uint64_t>, kHistogramSlots> requests_per_connection;
    std::atomic<std::uint64_t> requests_per_connection_sum;
    std::atomic<std::uint64_t> requests_per_connection_count;
    std::array<std::atomic<std::uint64_t>, kLifetimeSlots> connection_lifetime;
    std::atomic<std::uint64_t> connection_lifetime_sum_us;

    // A response the module decided on (HTTP/2 and HTTP/0.9 are not counted).
    void count_response(bool kept);
    // A connection that carried at least one decided request has ended,
    // `lifetime_us` after it was accepted.
    void count_connection_end(CloseReason reason, std::uint64_t requests_served, std::uint64_t lifetime_us);
    CounterValues load() const;
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "counters in shared memory need lock-free atomics");

// The histogram slot for a connection that served `requests` requests.
std::size_t histogram_slot(std::uint64_t requests);
// The lifetime histogram's slot for a connection that lasted `lifetime_us`.
std::size_t lifetime_slot(std::uint64_t lifetime_us);

struct NamedValues {
    std::string name;  // the virtual host, "host:port"
    CounterValues values;
};

// Prometheus text exposition format 0.0.4. Each family has one series for
// the whole server (no vhost label), always, and one per virtual host
// (label vhost="host:port") that has counted anything: `vhosts` with
// nothing counted are left out.
std::string render_prometheus(const CounterValues& total, const std::vector<NamedValues>& vhosts);
// The same numbers as JSON: {"total": {...}, "vhosts": [{"vhost": ..., ...}]}
// (again without the vhosts that counted nothing), then `extra_members`
// ("name":value,...) when given: the gauges.
std::string render_json(const CounterValues& total, const std::vector<NamedValues>& vhosts,
                        const std::string& extra_members = {});
// Microseconds as decimal seconds: "6.502000" (a histogram's _sum), or
// "4.870" with `milliseconds_only` (the drain's answer and gauges).
std::string seconds_text(std::uint64_t us, bool milliseconds_only = false);
// A Prometheus label value and a JSON string's contents, escaped.
std::string escape_label(std::string_view value);
std::string escape_json(std::string_view value);
// "Key: value" lines for mod_status's machine-readable ?auto page (totals).
std::string render_status_auto(const CounterValues& total);

}  // namespace keepalive

#endif
