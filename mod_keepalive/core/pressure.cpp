#include "core/pressure.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/counters.h"

namespace keepalive {
namespace {

constexpr int kFull = 1000;

int clamp_permille(long long value) { return static_cast<int>(std::clamp<long long>(value, 0, kFull)); }

// Event's connections_above_limit(): the process is at its limit when its
// connections, less those in lingering close, reach ThreadsPerChild + idle
// threads x AsyncRequestWorkerFactor (with no idle thread, always).
int connections_share(const PressureInputs& in, int busy) {
    if (in.process_not_accepting) return kFull;
    const long long idle = in.process_threads - busy;
    const long long limit = in.process_threads + idle * std::max(in.async_worker_factor, 1);
    return clamp_permille(std::max(in.process_connections, 0) * 1000LL / limit);
}

// "0.25", "1", "0.123": a ratio with up to three decimals.
std::string ratio_text(double value) {
    if (!std::isfinite(value)) value = 0.0;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", std::clamp(value, 0.0, 1.0));
    std::string text = buf;
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
    return text;
}

std::string permille_text(int permille) { return ratio_text(permille / 1000.0); }

void gauge_family(std::string& out, const char* name, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += " gauge\n";
}

}  // namespace

const char* pressure_input_name(PressureInput input) {
    switch (input) {
        case PressureInput::WorkerOccupancy: return "worker_occupancy";
        case PressureInput::ProcessWorkers: return "process_workers";
        case PressureInput::ProcessConnections: return "process_connections";
        case PressureInput::AcceptQueue: return "accept_queue";
    }
    return "unknown";
}

Pressure assess_pressure(const PressureInputs& in) {
    Pressure p;
    if (in.worker_occupancy_permille >= 0) {
        p.input[static_cast<std::size_t>(PressureInput::WorkerOccupancy)] = clamp_permille(in.worker_occupancy_permille);
    }
    if (in.process_threads > 0) {
        const int busy = std::clamp(in.process_busy_threads, 0, in.process_threads);
        const int now = clamp_permille(busy * 1000LL / in.process_threads);
        p.input[static_cast<std::size_t>(PressureInput::ProcessWorkers)] =
            std::max(now, clamp_permille(in.process_recently_full_permille));
        p.input[static_cast<std::size_t>(PressureInput::ProcessConnections)] = connections_share(in, busy);
    }
    if (in.accept_queue_waiting >= 0) {
        p.accept_queue_waiting = in.accept_queue_waiting;
        p.client_unserved = client_unserved(in);
        p.input[static_cast<std::size_t>(PressureInput::AcceptQueue)] = in.client_waited ? kFull : 0;
    }
    for (PressureInput which : kCombinedInputs) p.combined = std::max(p.combined, p.of(which));
    // Occupancy sheds while a client waits, or when nothing says whether
    // anyone does.
    const bool queue_known = p.of(PressureInput::AcceptQueue) >= 0;
    const int occupancy = queue_known && !p.client_unserved ? -1 : p.of(PressureInput::WorkerOccupancy);
    p.shedding = std::max({p.of(PressureInput::AcceptQueue), occupancy, p.of(PressureInput::ProcessWorkers)});
    return p;
}

bool client_unserved(const PressureInputs& in) {
    return in.accept_queue_waiting > std::max(in.ready_workers, 0);
}

bool WaitTracker::observe(bool unserved, std::int64_t now_us, std::int64_t min_wait_us) {
    if (!unserved) {
        unserved_since_us = -1;
        return false;
    }
    if (unserved_since_us < 0) unserved_since_us = now_us;
    return now_us - unserved_since_us >= min_wait_us;
}

bool WaitTracker::judge(bool unserved, std::int64_t now_us, std::int64_t min_wait_us) const {
    return unserved && unserved_since_us >= 0 && now_us - unserved_since_us >= min_wait_us;
}

int PressureMemory::recall(std::int64_t now_us, std::int64_t hold_us, std::int64_t fade_us) const {
    if (peak_permille <= 0) return 0;
    const std::int64_t elapsed = std::max<std::int64_t>(now_us - at_us, 0);
    if (elapsed < hold_us) return clamp_permille(peak_permille);
    const std::int64_t fading = elapsed - std::max<std::int64_t>(hold_us, 0);
    if (fade_us <= 0 || fading >= fade_us) return 0;
    // fading < fade: the product stays far below overflow for any fade an
    // idle timeout can give (2^31 s).
    return clamp_permille(peak_permille - static_cast<std::int64_t>(kFull) * fading / fade_us);
}

int PressureMemory::observe(int value, std::int64_t now_us, std::int64_t hold_us, std::int64_t fade_us) {
    const int value_now = clamp_permille(value);
    const int standing = recall(now_us, hold_us, fade_us);
    if (value_now >= standing) {
        peak_permille = value_now;
        at_us = now_us;
        return value_now;
    }
    return standing;
}

std::int64_t adapted_idle_timeout(std::int64_t requested, const AdaptiveSettings& a, int pressure_permille) {
    if (!a.enabled || pressure_permille <= a.shrink_at_permille || requested <= a.floor_us) return requested;
    const std::int64_t span = a.close_at_permille - a.shrink_at_permille;
    if (span <= 0) return a.floor_us;
    const std::int64_t over = std::min<std::int64_t>(pressure_permille - a.shrink_at_permille, span);
    return requested - (requested - a.floor_us) * over / span;
}

double timeout_scale(std::int64_t requested_us, const AdaptiveSettings& a, const Pressure& p) {
    if (!a.enabled || p.combined < 0) return 1.0;
    if (p.shedding >= a.close_at_permille) return 0.0;
    if (requested_us <= 0) return 1.0;
    return static_cast<double>(adapted_idle_timeout(requested_us, a, p.combined)) /
           static_cast<double>(requested_us);
}

std::optional<int> event_worker_factor(std::string_view arg) {
    // strtod needs a terminated string; a factor is a short number.
    if (arg.empty() || arg.size() > 64) return std::nullopt;
    const std::string text(arg);
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0' || !std::isfinite(value) || value <= 0) return std::nullopt;
    // Event: worker_factor = val * 16 (unsigned), at least 16, used as
    // worker_factor / 16. Beyond any thread count a factor changes nothing.
    const double sixteenths = std::min(value * 16.0, 16.0 * 1000000.0);
    return std::max(static_cast<int>(sixteenths), 16) / 16;
}

std::string render_pressure_prometheus(const PressureGauges& g) {
    std::string out;
    gauge_family(out, "keepalive_pressure_ratio",
                 "Load-adaptive pressure by input, 0 to 1 (1: that input is at its limit).");
    for (std::size_t i = 0; i < kPressureInputCount; ++i) {
        if (g.pressure.input[i] < 0) continue;
        out += "keepalive_pressure_ratio{input=\"";
        out += pressure_input_name(static_cast<PressureInput>(i));
        out += "\"} " + permille_text(g.pressure.input[i]) + "\n";
    }
    if (g.pressure.combined >= 0) {
        gauge_family(out, "keepalive_pressure_combined_ratio",
                     "Load-adaptive pressure, the largest of its inputs, 0 to 1.");
        out += "keepalive_pressure_combined_ratio " + permille_text(g.pressure.combined) + "\n";
    }
    if (g.pressure.shedding >= 0) {
        gauge_family(out, "keepalive_pressure_shedding_ratio",
                     "Load-adaptive pressure of the inputs that close responses, 0 to 1.");
        out += "keepalive_pressure_shedding_ratio " + permille_text(g.pressure.shedding) + "\n";
    }
    if (g.pressure.accept_queue_waiting >= 0) {
        gauge_family(out, "keepalive_accept_queue_clients",
                     "Clients waiting in the listening sockets' accept queues for a worker.");
        out += "keepalive_accept_queue_clients " + std::to_string(g.pressure.accept_queue_waiting) + "\n";
    }
    gauge_family(out, "keepalive_adaptive_timeout_scale_ratio",
                 "Share of the idle timeout the load-adaptive mode advertises now (1: unchanged, 0: closing).");
    out += "keepalive_adaptive_timeout_scale_ratio " + ratio_text(g.timeout_scale) + "\n";
    for (const auto& [name, scale] : g.vhost_scales) {
        out += "keepalive_adaptive_timeout_scale_ratio{vhost=\"" + escape_label(name) + "\"} " + ratio_text(scale) +
               "\n";
    }
    return out;
}

std::string render_pressure_json_members(const PressureGauges& g) {
    std::string out = "\"pressure\":{";
    for (std::size_t i = 0; i < kPressureInputCount; ++i) {
        if (g.pressure.input[i] < 0) continue;
        out += '"';
        out += pressure_input_name(static_cast<PressureInput>(i));
        out += "\":" + permille_text(g.pressure.input[i]) + ",";
    }
    const auto known_or_null = [](int permille) { return permille >= 0 ? permille_text(permille) : std::string("null"); };
    out += "\"combined\":" + known_or_null(g.pressure.combined) + ",\"shedding\":" + known_or_null(g.pressure.shedding);
    out += ",\"accept_queue_clients\":" +
           (g.pressure.accept_queue_waiting >= 0 ? std::to_string(g.pressure.accept_queue_waiting) : std::string("null"));
    out += "},\"timeout_scale\":{\"total\":" + ratio_text(g.timeout_scale) + ",\"vhosts\":{";
    for (std::size_t i = 0; i < g.vhost_scales.size(); ++i) {
        if (i) out += ',';
        out += "\"" + escape_json(g.vhost_scales[i].first) + "\":" + ratio_text(g.vhost_scales[i].second);
    }
    out += "}}";
    return out;
}

}  // namespace keepalive
