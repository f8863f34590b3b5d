// The drain (core/drain.h) in a running server: its schedule in shared
// memory, what it changes for each response, and the keepalive-drain
// handler that starts, cancels and reports it (keepalivectl calls it).
#ifndef MOD_KEEPALIVE_HTTPD_DRAIN_H
#define MOD_KEEPALIVE_HTTPD_DRAIN_H

#include <atomic>
#include <cstdint>

#include "httpd.h"

#include "core/drain.h"
#include "core/policy.h"
#include "httpd/version_guard.h"

namespace keepalive::httpd {

// post_config: a fresh, undrained schedule for each generation; handler:
// keepalive-drain.
void register_drain_hooks();

// The schedule's shared part, one per generation: the parent creates it at
// post_config and its children inherit the mapping, so a graceful restart
// starts undrained while the old generation's children keep their own.
struct DrainShared {
    std::atomic<std::int64_t> started_us;       // 0: no drain
    std::atomic<std::int64_t> longest_idle_us;  // the longest idle wait promised before it
};
static_assert(std::atomic<std::int64_t>::is_always_lock_free, "the drain in shared memory needs lock-free atomics");

extern DrainShared* drain_shared;

// Whether a drain is under way (or complete) in this generation: one load
// from shared memory, cheap enough for every response.
inline bool drain_active() {
    return drain_shared && drain_shared->started_us.load(std::memory_order_relaxed) != 0;
}

// What the drain means for this response on the connection accepted at
// `accepted`: sets facts->drain_closes or facts->drain_cap_us.
void apply_drain(keepalive::ResponseFacts* facts, const conn_rec* c, apr_time_t accepted);

// A kept response promised an idle wait of `idle_us`: before a drain starts,
// the longest such promise is how long the drain must last.
void note_promised_idle_wait(std::int64_t idle_us);

// The schedule as it stands, for the gauges.
keepalive::DrainSchedule drain_schedule();

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_DRAIN_H
