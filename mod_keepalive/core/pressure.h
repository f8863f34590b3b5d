// The load-adaptive mode's pressure model: several inputs, each a share
// from 0 to 1000 permille of what the server can take, combined by one pure
// function into the pressures the policy shrinks idle timeouts by and
// closes by (ResponseFacts::pressure_permille, shedding_pressure_permille).
//
// Every MPM: worker occupancy, the share of MaxRequestWorkers busy (event
// processes that stopped accepting count as full). Event adds two inputs of
// the process that responds, which is the process whose listener will hold
// the idle connection and may close it early (event.c, listener_thread):
//
//  - process workers: the share of its threads busy. When a connection or a
//    keep-alive request arrives and none is idle, its listener closes every
//    idle keep-alive connection of the process ("All workers are busy").
//    So the input is also full for a while after the process was seen with
//    no idle thread (PressureMemory: held for the longest KeepAliveTimeout,
//    then fading over as long again): a process that ran out of threads
//    within the last timeout will likely again within the next, and a
//    promise made now would likely be broken. Shedding only while the
//    process is busy now is not enough: it lowers the process's keep-alive
//    connections, so event stops accepting later (connections_above_limit
//    counts them) and its threads run out more often, closing the
//    connections still kept (bench/RESULTS.md, "Early closes under event").
//  - process connections: its open connections (not in lingering close)
//    against event's limit, ThreadsPerChild + idle threads x
//    AsyncRequestWorkerFactor, at which it stops accepting
//    (connections_above_limit()). Reported, but not combined: at that limit
//    the process makes new clients wait rather than run out of threads, and
//    the keep-alive connections it holds are what bring it there, so
//    closing them on this input lets it accept more and run out of threads
//    sooner, which closes the connections still kept early (measured:
//    bench/RESULTS.md, "Early closes under event").
//
// Every MPM, on Linux: the accept queue, whether clients wait in the
// listeners' accept queues with no worker ready to take them (TCP_INFO on
// the listening sockets: the queue's length, as `ss -lnt` shows it, against
// the workers ready in accept). This is what occupancy only guesses at: a
// held idle connection costs nothing while nobody waits, and a worker to
// someone who does. A new connection can sit in the queue for a moment
// while every worker is busy, on its way to one that is about to call
// accept() again; so a client counts as waiting on its own only once the
// queue has held more clients than ready workers for two sampling intervals
// (WaitTracker). A momentary wait still matters with occupancy: see
// shedding below. The input is full while clients wait, else 0.
//
// Two figures come out:
//  - combined: the largest known input of kCombinedInputs. It shrinks idle
//    timeouts (adapted_idle_timeout()), toward the floor at close_at.
//  - shedding: the largest known input of those that close responses
//    (load-shedding at close_at). When the accept queue is known, worker
//    occupancy sheds only while a client is in the queue with no worker
//    ready for it, even for a moment: while the queue is empty it is a
//    guard that shortens the promises (a burst waits at most the floor for
//    a worker) instead of the rule that closes, so connections are held
//    above the thresholds while nobody waits, whatever the pool's size;
//    and a client that waits two sampling intervals sheds at any
//    occupancy. When the queue is unknown (not Linux, or unreadable),
//    occupancy sheds, as before. Event's process workers always shed: they
//    foretell its early closes.
//
// Part of the policy core: no httpd or APR headers.
#ifndef MOD_KEEPALIVE_CORE_PRESSURE_H
#define MOD_KEEPALIVE_CORE_PRESSURE_H

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/policy.h"

namespace keepalive {

// What the adapter samples. Counts, not shares: the model computes the
// shares, as event would from the same counts.
struct PressureInputs {
    int worker_occupancy_permille = -1;  // busy share of MaxRequestWorkers; -1 unknown
    // Event only (process_threads 0 elsewhere): the responding process.
    int process_threads = 0;             // ThreadsPerChild
    int process_busy_threads = 0;        // threads serving a request, the responding one included
    int process_recently_full_permille = -1;  // memory of it having no idle thread (PressureMemory)
    int process_connections = 0;         // open client connections, not in lingering close
    bool process_not_accepting = false;  // its listeners are disabled (connections above event's limit)
    int async_worker_factor = 2;         // AsyncRequestWorkerFactor, as event applies it
    // Every MPM on Linux: clients waiting in the listeners' accept queues
    // (-1: unknown), the workers ready to take them (in accept, or idle for
    // the listener to hand one to), and whether clients have waited for a
    // worker long enough to count on their own (WaitTracker).
    int accept_queue_waiting = -1;
    int ready_workers = 0;
    bool client_waited = false;
};

enum class PressureInput { WorkerOccupancy, ProcessWorkers, ProcessConnections, AcceptQueue };
constexpr std::size_t kPressureInputCount = static_cast<std::size_t>(PressureInput::AcceptQueue) + 1;

// The inputs the combined pressure is the largest of.
constexpr std::array<PressureInput, 3> kCombinedInputs = {
    PressureInput::WorkerOccupancy, PressureInput::ProcessWorkers, PressureInput::AcceptQueue};

// "worker_occupancy", "process_workers", "process_connections",
// "accept_queue": the gauges' label values.
const char* pressure_input_name(PressureInput input);

struct Pressure {
    std::array<int, kPressureInputCount> input{-1, -1, -1, -1};  // permille, -1 unknown
    int combined = -1;  // the largest known input of kCombinedInputs; -1 when none is known
    int shedding = -1;  // the largest known input of those that close (see above); -1 when none is known
    int accept_queue_waiting = -1;  // clients waiting in the accept queues (ready workers or not); -1 unknown
    bool client_unserved = false;   // more waiting than workers ready: someone waits for a worker

    int of(PressureInput which) const { return input[static_cast<std::size_t>(which)]; }
};

// The pressure the inputs say. Pure; out-of-range counts are clamped.
Pressure assess_pressure(const PressureInputs& in);

// Whether more clients wait in the accept queues than workers are ready to
// take them (false when the queues are unknown).
bool client_unserved(const PressureInputs& in);

// Whether clients have waited for a worker long enough to count on their
// own, judged from one process's samples: unserved at samples spanning at
// least `min_wait_us`, with none between that found them served.
struct WaitTracker {
    std::int64_t unserved_since_us = -1;

    bool observe(bool unserved, std::int64_t now_us, std::int64_t min_wait_us);
    // What observe() would answer, without recording the sample.
    bool judge(bool unserved, std::int64_t now_us, std::int64_t min_wait_us) const;
};

// A recent peak that is held, then fades: the value seen at `at_us` stands
// for `hold_us`, then loses its full scale (1000) per `fade_us`.
struct PressureMemory {
    int peak_permille = 0;
    std::int64_t at_us = 0;

    // The peak as it stands at `now_us` (0 once faded; a fade that is not
    // positive ends it with the hold).
    int recall(std::int64_t now_us, std::int64_t hold_us, std::int64_t fade_us) const;
    // Remembers `value` when it is at least what the peak stands at now;
    // returns the peak as it now stands.
    int observe(int value, std::int64_t now_us, std::int64_t hold_us, std::int64_t fade_us);
};

// The idle timeout after the load-adaptive mode has had its say: unchanged
// at or below shrink_at, then linearly shorter, down to the floor (or to
// the requested value, if that is shorter still) at close_at.
std::int64_t adapted_idle_timeout(std::int64_t requested, const AdaptiveSettings& a, int pressure_permille);

// The share of `requested` the adaptive mode advertises at this pressure:
// 1 when it changes nothing (also when disabled or the pressure unknown),
// 0 when responses close (load-shedding).
double timeout_scale(std::int64_t requested_us, const AdaptiveSettings& a, const Pressure& p);

// AsyncRequestWorkerFactor as event applies it: event stores the factor in
// sixteenths, at least 16, and divides back with integer division (1.5 and
// 1.9 act as 1, 2.5 as 2). nullopt for a value event refuses or one that
// cannot be a factor (not a number, trailing text, <= 0, not finite).
std::optional<int> event_worker_factor(std::string_view arg);

// The gauges of the keepalive-status endpoint, computed at scrape time.
struct PressureGauges {
    Pressure pressure;
    double timeout_scale = 1.0;                               // the main server's
    std::vector<std::pair<std::string, double>> vhost_scales;  // "host:port", scale
};

// Prometheus text: keepalive_pressure_ratio{input=...} (known inputs only),
// keepalive_pressure_combined_ratio and keepalive_pressure_shedding_ratio
// (when known), keepalive_accept_queue_clients (when known) and
// keepalive_adaptive_timeout_scale_ratio (per vhost and without label).
std::string render_pressure_prometheus(const PressureGauges& g);
// The same as JSON members, for the top-level object:
// "pressure":{"worker_occupancy":0.25,...,"combined":0.25,"shedding":0.25,
// "accept_queue_clients":0},
// "timeout_scale":{"total":1,"vhosts":{"host:port":1}}.
std::string render_pressure_json_members(const PressureGauges& g);

}  // namespace keepalive

#endif  // MOD_KEEPALIVE_CORE_PRESSURE_H
