#include "httpd/load.h"

#include <algorithm>
#include <atomic>

#include "http_config.h"
#include "ap_mpm.h"
#include "scoreboard.h"

namespace keepalive::httpd {
namespace {

int server_limit = 0;       // scoreboard slots for processes
int threads_per_child = 0;  // worker slots in use per process
int capacity = 0;           // workers the MPM may run: MaxRequestWorkers
ap_generation_t generation = 0;

std::atomic<apr_time_t> next_sample_at{0};
std::atomic<int> last_occupancy{-1};

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

int walk_scoreboard() {
    if (!ap_scoreboard_image || capacity <= 0) return -1;
    int busy = 0;
    for (int i = 0; i < server_limit; ++i) {
        const process_score* ps = ap_get_scoreboard_process(i);
        // Processes of an earlier generation (finishing after a graceful
        // restart) or quiescing do not serve new clients: capacity is the
        // current generation's.
        if (!ps || ps->pid == 0 || ps->generation != generation || ps->quiescing) continue;
        if (ps->not_accepting) {
            // Event: a process that stopped accepting is full, whatever its
            // threads are doing at this instant.
            busy += threads_per_child;
            continue;
        }
        for (int j = 0; j < threads_per_child; ++j) {
            const worker_score* ws = ap_get_scoreboard_worker_from_indexes(i, j);
            if (ws && occupied(ws->status)) ++busy;
        }
    }
    const long permille = static_cast<long>(busy) * 1000 / capacity;
    return static_cast<int>(permille > 1000 ? 1000 : permille);
}

int query(int what) {
    int value = 0;
    return ap_mpm_query(what, &value) == APR_SUCCESS ? value : 0;
}

// child_init: the MPM's limits, read once per child.
void load_child_init(apr_pool_t*, server_rec*) {
    server_limit = query(AP_MPMQ_HARD_LIMIT_DAEMONS);
    const int threads = query(AP_MPMQ_MAX_THREADS);
    threads_per_child = threads > 0 ? std::min(threads, query(AP_MPMQ_HARD_LIMIT_THREADS)) : 1;
    capacity = query(AP_MPMQ_MAX_DAEMONS) * threads_per_child;
    generation = query(AP_MPMQ_GENERATION);
}

}  // namespace

void register_load_hooks() { ap_hook_child_init(load_child_init, nullptr, nullptr, APR_HOOK_MIDDLE); }

int worker_occupancy(apr_time_t now, apr_interval_time_t interval) {
    apr_time_t due = next_sample_at.load(std::memory_order_relaxed);
    if (now >= due && next_sample_at.compare_exchange_strong(due, now + interval, std::memory_order_relaxed)) {
        last_occupancy.store(walk_scoreboard(), std::memory_order_relaxed);
    }
    return last_occupancy.load(std::memory_order_relaxed);
}

}  // namespace keepalive::httpd
