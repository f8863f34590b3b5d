#include "core/drain.h"

#include <algorithm>

#include "core/counters.h"
#include "core/policy.h"

namespace keepalive {
namespace {

// Seconds with millisecond precision, as text: "4.870"; 0 for anything negative.
std::string seconds(std::int64_t us) {
    return seconds_text(static_cast<std::uint64_t>(std::max<std::int64_t>(0, us)), true);
}

}  // namespace

const char* drain_state_name(DrainState state) {
    switch (state) {
        case DrainState::Idle: return "idle";
        case DrainState::Draining: return "draining";
        case DrainState::Drained: return "drained";
    }
    return "unknown";
}

std::int64_t DrainSchedule::window_us() const {
    return std::max<std::int64_t>(0, spread_us < 0 ? longest_idle_us : spread_us);
}

std::int64_t DrainSchedule::complete_at_us() const {
    return started_us + std::max(window_us(), std::max<std::int64_t>(0, longest_idle_us));
}

DrainState DrainSchedule::state_at(std::int64_t now_us) const {
    if (!active()) return DrainState::Idle;
    return now_us < complete_at_us() ? DrainState::Draining : DrainState::Drained;
}

std::int64_t DrainSchedule::remaining_us(std::int64_t now_us) const {
    if (!active()) return 0;
    return std::max<std::int64_t>(0, complete_at_us() - now_us);
}

DrainVerdict drain_verdict(const DrainSchedule& schedule, std::int64_t now_us, std::uint64_t connection_key) {
    DrainVerdict v;
    if (!schedule.active()) return v;
    const std::int64_t remaining = schedule.remaining_us(now_us);
    if (remaining <= 0) {
        v.close = true;
        return v;
    }
    // The moment: a fraction of the window in 1/65536ths, from the key.
    const std::int64_t window = schedule.window_us();
    const std::int64_t fraction = key_fraction(connection_key);
    const std::int64_t moment = schedule.started_us + window / 65536 * fraction + window % 65536 * fraction / 65536;
    v.close = now_us >= moment;
    v.cap_us = remaining;
    return v;
}

std::string render_drain_status(const DrainSchedule& schedule, std::int64_t now_us) {
    std::string out = "state: " + std::string(drain_state_name(schedule.state_at(now_us))) + "\n";
    out += "started: " + seconds(schedule.active() ? schedule.started_us : 0) + "\n";
    out += "complete_in: " + seconds(schedule.remaining_us(now_us)) + "\n";
    out += "spread: " + seconds(schedule.window_us()) + "\n";
    out += "longest_idle_timeout: " + seconds(schedule.longest_idle_us) + "\n";
    return out;
}

std::string render_drain_prometheus(const DrainSchedule& schedule, std::int64_t now_us) {
    const DrainState now = schedule.state_at(now_us);
    std::string out = "# HELP keepalive_drain_state The drain (keepalivectl): 1 for the state it is in.\n"
                      "# TYPE keepalive_drain_state gauge\n";
    for (DrainState each : {DrainState::Idle, DrainState::Draining, DrainState::Drained}) {
        out += "keepalive_drain_state{state=\"" + std::string(drain_state_name(each)) + "\"} " +
               (each == now ? "1" : "0") + "\n";
    }
    out += "# HELP keepalive_drain_remaining_seconds Time until the drain under way is complete; 0 when none is.\n"
           "# TYPE keepalive_drain_remaining_seconds gauge\n"
           "keepalive_drain_remaining_seconds " + seconds(schedule.remaining_us(now_us)) + "\n";
    out += "# HELP keepalive_longest_idle_timeout_seconds The longest idle wait promised since this generation "
           "started (before any drain): how long a drain takes.\n"
           "# TYPE keepalive_longest_idle_timeout_seconds gauge\n"
           "keepalive_longest_idle_timeout_seconds " + seconds(schedule.longest_idle_us) +
           "\n";
    return out;
}

std::string render_drain_json_member(const DrainSchedule& schedule, std::int64_t now_us) {
    return "\"drain\":{\"state\":\"" + std::string(drain_state_name(schedule.state_at(now_us))) +
           "\",\"remaining_seconds\":" + seconds(schedule.remaining_us(now_us)) +
           ",\"longest_idle_timeout_seconds\":" + seconds(schedule.longest_idle_us) + "}";
}

}  // namespace keepalive
