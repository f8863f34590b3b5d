// The pressure inputs of the load-adaptive mode (core/pressure.h explains
// the model). Every MPM: worker occupancy across the current generation's
// processes. Event also: the responding process's own busy threads, its
// connections against event's limit, and whether it stopped accepting:
// event.c's listener closes all of a process's idle keep-alive connections
// when a connection or request arrives and none of that process's threads
// is idle, and stops accepting when connections_above_limit().
//
// Every MPM on Linux, also: the listeners' accept queues (accept_queue.cpp),
// read at the same interval, unless KeepAliveAdaptiveQueue Off.
//
// The process's connections are counted by the module (pre_connection to
// the pool cleanup, less those in lingering close): the scoreboard's
// process_score.connections is refreshed only when the listener maintains
// its timeout queues, which can be seconds stale.

#include "httpd/load.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>

#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_shm.h"
#include "http_core.h"
#include "scoreboard.h"

#include "httpd/accept_queue.h"
#include "httpd/config.h"
#include "httpd/response_facts.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

int server_limit = 0;       // scoreboard slots for processes
int threads_per_child = 0;  // worker slots in use per process
int capacity = 0;           // workers the MPM may run: MaxRequestWorkers
ap_generation_t generation = 0;
std::atomic<int> own_slot{-1};  // this process's scoreboard slot, once found

// Set at post_config (inherited by the children). Event only.
int async_worker_factor = 2;           // AsyncRequestWorkerFactor as event applies it
apr_interval_time_t memory_span = 0;  // the longest KeepAliveTimeout: how long a full process is remembered
bool read_queues = false;             // KeepAliveAdaptiveQueue On and the queues were readable at start-up
apr_interval_time_t min_queue_wait = 0;  // how long clients must wait to count: two sampling intervals

std::atomic<int> open_connections{0};
std::atomic<int> lingering_connections{0};

std::atomic<apr_time_t> next_sample_at{0};
// The last sample's combined and shedding pressures, packed so that a
// reader sees both of one sample: (combined + 1) | (shedding + 1) << 16.
std::atomic<std::uint32_t> last_pressure{0};
// When the process last had no idle thread, and since when its samples
// have seen clients wait for a worker; updated by one thread at a time.
std::atomic_flag sampling = ATOMIC_FLAG_INIT;
keepalive::PressureMemory process_full;
keepalive::WaitTracker queue_wait;

// Under prefork and worker no input is a process's own, so one sample
// serves every process: the process whose request finds it due takes it
// (a compare-and-swap on its time) and publishes the result here, and the
// server walks the scoreboard and reads the accept queues at most once per
// interval, whatever its number of processes (each process sampling on its
// own cost 5% of a request at prefork 256: bench/RESULTS.md, "The occupancy
// sampler's cost at large pools"). Made per generation in pconf, as the
// drain's schedule. Event keeps a sample per process: its inputs are its own.
struct SharedSample {
    std::atomic<apr_time_t> next_sample_at{0};
    std::atomic<std::uint32_t> last_pressure{0};
    // Written by the process that took the sample, one per interval.
    keepalive::WaitTracker queue_wait;
};
SharedSample* shared_sample = nullptr;  // prefork and worker with the adaptive mode on

std::uint32_t pack(const keepalive::Pressure& p) {
    return static_cast<std::uint32_t>(p.combined + 1) | static_cast<std::uint32_t>(p.shedding + 1) << 16;
}

// A worker that holds a client: serving, or (prefork, worker) waiting on an
// idle keep-alive connection, which is exactly what starves new clients.
// Lingering close (SERVER_CLOSING) is not counted: it ends within
// milliseconds once the client has read the response, and on a busy host
// there are always a few such workers, so counting them pushes occupancy
// over the close threshold in bursts and sheds thinking clients while most
// workers are really free (bench/RESULTS.md, "Algorithm changes").
bool occupied(int status) {
    switch (status) {
        case SERVER_DEAD:
        case SERVER_STARTING:
        case SERVER_READY:
        case SERVER_IDLE_KILL:
        case SERVER_CLOSING:
            return false;
        default:
            return true;
    }
}

// A process's threads: those that hold a client, and those ready to take a
// new one (in accept, or idle where the listener can hand it one).
struct Threads {
    int busy = 0;
    int ready = 0;
};

// The process's worker slots are read in place: slot < ServerLimit and
// threads_per_child <= ThreadLimit, the scoreboard's own bounds, so the
// index checks of ap_get_scoreboard_worker_from_indexes() (a call per slot,
// most of a walk's cost at 1,024 slots) are not needed.
Threads threads_of(int slot) {
    const worker_score* workers = ap_scoreboard_image->servers[slot];
    Threads t;
    for (int j = 0; j < threads_per_child; ++j) {
        const int status = workers[j].status;
        t.busy += occupied(status) ? 1 : 0;
        t.ready += status == SERVER_READY ? 1 : 0;
    }
    return t;
}

// Whether `slot` is this process's: the parent writes the pid into it after
// the fork, so it is looked for again until found.
bool is_own_slot(int slot, const process_score* ps) {
    const int known = own_slot.load(std::memory_order_relaxed);
    if (known >= 0) return slot == known;
    if (ps->pid != getpid()) return false;
    own_slot.store(slot, std::memory_order_relaxed);
    return true;
}

// Large pools are read in parts. A walk reads afresh this process's worker
// slots (event) and those of the next processes in turn, kWalkSlotBudget
// slots' worth (at least one process); every other process counts as it was
// last read. Each process's share of the busy total is kept in this
// process's memory, and the total moves by the difference when a share is
// read again, so a walk does not add up every process either. A pool of at
// most kWalkSlotBudget workers is read whole by every walk, as before; at
// event's 16 x 64 every other process is read again within 16 walks (160 ms
// at the default interval), at prefork's 256 within 8 of this child's
// samples (bench/RESULTS.md, "Scale: many virtual hosts and large pools").
constexpr int kWalkSlotBudget = 32;

std::atomic<unsigned> walk_cursor{0};
std::atomic<int> busy_total{0};
std::atomic<int> ready_total{0};

// Each process slot's shares of busy_total and ready_total, allocated at the
// first walk in the child (server_limit is read at child_init; the parent
// never walks).
struct ProcessShare {
    std::atomic<int> busy{0};
    std::atomic<int> ready{0};
};

ProcessShare* process_shares() {
    static const std::unique_ptr<ProcessShare[]> shares(new ProcessShare[server_limit]());
    return shares.get();
}

void update_share(std::atomic<int>& share, std::atomic<int>& total, int value) {
    if (share.load(std::memory_order_relaxed) == value) return;
    const int before = share.exchange(value, std::memory_order_relaxed);
    total.fetch_add(value - before, std::memory_order_relaxed);
}

// One walk of the scoreboard: the inputs, but the memory.
keepalive::PressureInputs walk_scoreboard(bool whole_pool) {
    keepalive::PressureInputs in;
    if (!ap_scoreboard_image || capacity <= 0 || server_limit <= 0) return in;
    const bool event = !mpm_waits_in_worker;
    ProcessShare* shares = process_shares();
    int own = -1;
    if (event) {
        own = own_slot.load(std::memory_order_relaxed);
        for (int i = 0; own < 0 && i < server_limit; ++i) {
            const process_score* ps = ap_get_scoreboard_process(i);
            if (ps && ps->pid != 0 && is_own_slot(i, ps)) own = i;
        }
    }
    const auto read_process = [&](int i) {
        const process_score* ps = &ap_scoreboard_image->parent[i];  // i < ServerLimit
        int share = 0;
        int ready = 0;
        // Processes of an earlier generation (finishing after a graceful
        // restart) or quiescing do not serve new clients: capacity is the
        // current generation's.
        if (ps->pid != 0 && ps->generation == generation && !ps->quiescing) {
            // Event: a process that stopped accepting is full, whatever its
            // threads are doing at this instant, and takes no new client.
            const Threads threads = i != own && ps->not_accepting ? Threads{threads_per_child, 0} : threads_of(i);
            share = ps->not_accepting ? threads_per_child : threads.busy;
            ready = ps->not_accepting ? 0 : threads.ready;
            if (i == own) {
                in.process_threads = threads_per_child;
                in.process_busy_threads = threads.busy;
                in.process_not_accepting = ps->not_accepting != 0;
                in.process_connections = open_connections.load(std::memory_order_relaxed) -
                                         lingering_connections.load(std::memory_order_relaxed);
                in.async_worker_factor = async_worker_factor;
            }
        }
        update_share(shares[i].busy, busy_total, share);
        update_share(shares[i].ready, ready_total, ready);
    };
    if (own >= 0) read_process(own);
    const int per_walk = std::max(1, kWalkSlotBudget / std::max(1, threads_per_child));
    const bool whole = whole_pool || per_walk >= server_limit;
    const int first = whole ? 0
                            : static_cast<int>(walk_cursor.fetch_add(static_cast<unsigned>(per_walk),
                                                                     std::memory_order_relaxed) %
                                               static_cast<unsigned>(server_limit));
    const int count = whole ? server_limit : per_walk;
    for (int k = 0; k < count; ++k) {
        const int i = (first + k) % server_limit;
        if (i != own) read_process(i);
    }
    const long busy = std::max(0, busy_total.load(std::memory_order_relaxed));
    const long permille = busy * 1000 / capacity;
    in.worker_occupancy_permille = static_cast<int>(permille > 1000 ? 1000 : permille);
    in.ready_workers = std::max(0, ready_total.load(std::memory_order_relaxed));
    return in;
}

// A sample. A process's own: with the memory of the process having had no
// idle thread, held for the longest idle timeout (the connections kept
// before are promised no longer than that), and whether clients have waited
// for a worker for two sampling intervals, when no other thread is sampling
// (that thread owns both meanwhile; a sample without them counts what is
// now). The shared one: the whole pool walked, the wait judged by the
// process that took the sample. `judge_only` reads the wait without moving
// it (a scrape is not a sample).
keepalive::Pressure sample(apr_time_t now, bool judge_only = false) {
    keepalive::PressureInputs in = walk_scoreboard(shared_sample != nullptr);
    if (read_queues) in.accept_queue_waiting = read_accept_queues().waiting;
    const auto judge_wait = [&](keepalive::WaitTracker& wait) {
        const bool unserved = keepalive::client_unserved(in);
        return judge_only ? wait.judge(unserved, now, min_queue_wait) : wait.observe(unserved, now, min_queue_wait);
    };
    if (shared_sample) {
        in.client_waited = judge_wait(shared_sample->queue_wait);
        return keepalive::assess_pressure(in);
    }
    if ((in.process_threads > 0 || in.accept_queue_waiting >= 0) && !sampling.test_and_set(std::memory_order_acquire)) {
        if (in.process_threads > 0) {
            const int full = in.process_busy_threads >= in.process_threads ? 1000 : 0;
            in.process_recently_full_permille = process_full.observe(full, now, memory_span, memory_span);
        }
        if (in.accept_queue_waiting >= 0) {
            in.client_waited = judge_wait(queue_wait);
        }
        sampling.clear(std::memory_order_release);
    }
    return keepalive::assess_pressure(in);
}

int query(int what) {
    int value = 0;
    return ap_mpm_query(what, &value) == APR_SUCCESS ? value : 0;
}

// The last AsyncRequestWorkerFactor in the configuration (event reads it
// into a static of its own); top level only, or within conditional sections.
const char* find_worker_factor(const ap_directive_t* node, const char* found) {
    for (; node; node = node->next) {
        if (!strcasecmp(node->directive, "AsyncRequestWorkerFactor") && node->args) found = node->args;
        if (node->first_child) found = find_worker_factor(node->first_child, found);
    }
    return found;
}

// post_config: what event's limit and the memories need, and whether the
// accept queues can be read (the listeners are open by now: the MPM's
// open_logs hook sets them up).
// One sample for the server, where no input is a process's own.
void share_the_sample(apr_pool_t* pconf, server_rec* main_server, bool adaptive_used) {
    shared_sample = nullptr;
    int async = 0;
    if (!adaptive_used || (ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) == APR_SUCCESS && async)) return;
    apr_shm_t* shm = nullptr;
    const apr_status_t rv = apr_shm_create(&shm, sizeof(SharedSample), nullptr, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, main_server,
                     "mod_keepalive: no shared memory for the adaptive mode's sample: each process samples on its own");
        return;
    }
    shared_sample = new (apr_shm_baseaddr_get(shm)) SharedSample{};
}

int load_post_config(apr_pool_t* pconf, apr_pool_t*, apr_pool_t*, server_rec* main_server) {
    async_worker_factor = 2;
    if (const char* arg = find_worker_factor(ap_conftree, nullptr)) {
        async_worker_factor = keepalive::event_worker_factor(arg).value_or(2);
    }
    memory_span = 0;
    bool adaptive_used = false;
    for (server_rec* s = main_server; s; s = s->next) {
        memory_span = std::max(memory_span, s->keep_alive_timeout);
        adaptive_used = adaptive_used || adaptive_settings_of(s).enabled;
    }
    read_queues = adaptive_used && accept_queue_wanted() && read_accept_queues().waiting >= 0;
    min_queue_wait = 2 * occupancy_sample_interval();
    share_the_sample(pconf, main_server, adaptive_used);
    // The parent's own check runs twice at start-up (configuration read
    // twice); saying it once is enough.
    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        log_accept_queue_support(main_server, adaptive_used, accept_queue_wanted());
    }
    return OK;
}

// child_init: the MPM's limits, read once per child.
void load_child_init(apr_pool_t*, server_rec*) {
    server_limit = query(AP_MPMQ_HARD_LIMIT_DAEMONS);
    const int threads = query(AP_MPMQ_MAX_THREADS);
    threads_per_child = threads > 0 ? std::min(threads, query(AP_MPMQ_HARD_LIMIT_THREADS)) : 1;
    capacity = query(AP_MPMQ_MAX_DAEMONS) * threads_per_child;
    generation = query(AP_MPMQ_GENERATION);
    own_slot.store(-1, std::memory_order_relaxed);
}

}  // namespace

void register_load_hooks() {
    ap_hook_post_config(load_post_config, nullptr, nullptr, APR_HOOK_MIDDLE);
    ap_hook_child_init(load_child_init, nullptr, nullptr, APR_HOOK_MIDDLE);
}

AdaptivePressure adaptive_pressure(apr_time_t now, apr_interval_time_t interval) {
    std::atomic<apr_time_t>& next = shared_sample ? shared_sample->next_sample_at : next_sample_at;
    std::atomic<std::uint32_t>& last = shared_sample ? shared_sample->last_pressure : last_pressure;
    apr_time_t due = next.load(std::memory_order_relaxed);
    if (now >= due && next.compare_exchange_strong(due, now + interval, std::memory_order_relaxed)) {
        last.store(pack(sample(now)), std::memory_order_relaxed);
    }
    const std::uint32_t packed = last.load(std::memory_order_relaxed);
    return {static_cast<int>(packed & 0xffff) - 1, static_cast<int>(packed >> 16) - 1};
}

keepalive::Pressure fresh_pressure(apr_time_t now) { return sample(now, true); }

void count_connection_opened() { open_connections.fetch_add(1, std::memory_order_relaxed); }
void count_connection_lingering() { lingering_connections.fetch_add(1, std::memory_order_relaxed); }
void count_connection_gone(bool lingering) {
    open_connections.fetch_sub(1, std::memory_order_relaxed);
    if (lingering) lingering_connections.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace keepalive::httpd
