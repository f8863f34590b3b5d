#include "httpd/shared_counters.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include "ap_mpm.h"
#include "scoreboard.h"

#include "core/counters.h"
#include "core/defaults.h"
#include "core/metric_slots.h"
#include "httpd/config.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

// Kept across restarts (ap_retained_data), so counters keep counting when
// the configuration is reloaded, as Prometheus counters should.
struct Retained {
    apr_shm_t* shm;
    MetricSlot* slots;
    std::uint32_t size;  // blocks, the total's and "other"'s included
};

// The retained data's key names the block layout: a restart that loads a
// build of the module with another layout (more close reasons, a block
// state) starts a segment of its own instead of misreading the old one.
const std::string& retained_key() {
    static const std::string key = "mod_keepalive metrics/2/" + std::to_string(sizeof(MetricSlot));
    return key;
}

// Set in the parent at post_config; children inherit the mapping.
MetricSlot* slots = nullptr;
std::uint32_t table_size = 0;

// A new segment of `size` blocks, with the old one's blocks copied in. The
// old segment stays mapped for children of the previous generation that are
// still finishing their requests (what they count there is lost: growing
// is for a configuration that outgrew the table, not for every restart).
bool create_slots(apr_pool_t* process_pool, Retained* retained, std::uint32_t size, const server_rec* s) {
    apr_shm_t* shm = nullptr;
    const apr_size_t bytes = sizeof(MetricSlot) * size;
    const apr_status_t rv = apr_shm_create(&shm, bytes, nullptr, process_pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "mod_keepalive: cannot create %" APR_SIZE_T_FMT " bytes of shared memory for counters", bytes);
        return false;
    }
    // An anonymous segment comes zero-filled (APR maps it anonymously, from
    // /dev/zero or with shmget, all of which zero it): no memset, which
    // would also bring every page of it into the parent (11 MB at 10,000
    // virtual hosts) before any is used.
    auto* fresh = static_cast<MetricSlot*>(apr_shm_baseaddr_get(shm));
    if (retained->slots) copy_slots(retained->slots, retained->size, fresh);
    retained->shm = shm;
    retained->slots = fresh;
    retained->size = size;
    return true;
}

ServerConfig* server_config(const server_rec* s) {
    return static_cast<ServerConfig*>(ap_get_module_config(s->module_config, &keepalive_module));
}

bool per_vhost(const server_rec* s) {
    const int set = server_config(s)->metrics_per_vhost;
    return set < 0 ? keepalive::defaults::kMetricsPerVhost : set == 1;
}

// The oldest generation a child still running belongs to, from the
// scoreboard (which lives on through restarts); `generation` when none is
// older. Reaped children have pid 0; one not reaped yet counts as running.
std::int32_t oldest_live_generation(std::int32_t generation) {
    std::int32_t oldest = generation;
    if (!ap_scoreboard_image) return oldest;
    for (int i = 0; i < ap_scoreboard_image->global->server_limit; ++i) {
        const process_score* ps = ap_get_scoreboard_process(i);
        if (ps && ps->pid != 0) oldest = std::min<std::int32_t>(oldest, ps->generation);
    }
    return oldest;
}

// post_config, in the parent, before any child of this generation exists:
// creates (first start) or finds again (restart) the shared counters and
// gives every server with series of its own a block.
int metrics_post_config(apr_pool_t*, apr_pool_t*, apr_pool_t*, server_rec* main_server) {
    // At start-up httpd reads the configuration twice and runs post_config
    // for each; no request is served between them and the first pass's
    // servers are thrown away, so blocks are given out in the second only
    // (with 10,000 virtual hosts, one pass is about 3% of httpd's start).
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) return OK;
    std::vector<std::string> names;
    std::vector<server_rec*> counted;
    std::uint32_t servers = 0;
    for (server_rec* s = main_server; s; s = s->next) ++servers;
    names.reserve(servers);
    counted.reserve(servers);
    servers = 0;
    for (server_rec* s = main_server; s; s = s->next) {
        ++servers;
        server_config(s)->metrics_slot = 0;  // KeepAliveMetricsPerVhost Off: the total only
        if (!per_vhost(s)) continue;
        names.push_back(vhost_name(s));
        counted.push_back(s);
    }
    const int max_vhosts = server_config(main_server)->metrics_max_vhosts;
    // auto: every server, and as many again (and a few) for servers that
    // restarts add while blocks of removed ones wait for old children.
    const bool automatic = max_vhosts < 0;
    const std::uint32_t limit = automatic ? 2 * servers + 8 : static_cast<std::uint32_t>(max_vhosts);

    auto* retained = static_cast<Retained*>(ap_retained_data_get(retained_key().c_str()));
    if (!retained) {
        retained = static_cast<Retained*>(ap_retained_data_create(retained_key().c_str(), sizeof(Retained)));
    }
    int generation = 0;
    ap_mpm_query(AP_MPMQ_GENERATION, &generation);
    const std::int32_t oldest = oldest_live_generation(generation);

    // A segment only grows: children of older generations hold the old one.
    // Under auto it grows when the hosts did not fit; with a number, to it.
    SlotAssignment a;
    for (int pass = 0; pass < 2; ++pass) {
        const bool too_small =
            !retained->slots || (automatic ? a.folded > 0 : retained->size < kFirstVhostSlot + limit);
        if (too_small) {
            const std::uint32_t size =
                automatic ? std::max(kFirstVhostSlot + limit, retained->size * 2) : kFirstVhostSlot + limit;
            if (!create_slots(main_server->process->pool, retained, size, main_server)) {
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        } else if (pass > 0) {
            break;
        }
        a = assign_slots(retained->slots, retained->size, automatic ? retained->size : limit, names, generation,
                         oldest);
    }
    slots = retained->slots;
    table_size = retained->size;
    for (std::size_t i = 0; i < counted.size(); ++i) {
        server_config(counted[i])->metrics_slot = static_cast<int>(a.slots[i]);
    }

    // apr's formatter knows no %zu: sizes as apr_size_t.
    if (a.folded) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, main_server,
                     "mod_keepalive: %" APR_SIZE_T_FMT " virtual hosts found no block of counters of their own "
                     "(KeepAliveMetricsMaxVhosts %u, %" APR_SIZE_T_FMT " blocks still held by hosts removed at a "
                     "restart): they are counted together as vhost=\"%s\", and in the totals",
                     static_cast<apr_size_t>(a.folded), limit, static_cast<apr_size_t>(a.retired_waiting),
                     keepalive::kOtherName);
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, main_server,
                 "mod_keepalive: counters for %" APR_SIZE_T_FMT " virtual hosts in %u blocks (generation %d, "
                 "oldest child's %d): %" APR_SIZE_T_FMT " freed for reuse, %" APR_SIZE_T_FMT " kept for older "
                 "children, %" APR_SIZE_T_FMT " folded into \"%s\"",
                 static_cast<apr_size_t>(names.size()), table_size, generation, static_cast<int>(oldest),
                 static_cast<apr_size_t>(a.reused), static_cast<apr_size_t>(a.retired_waiting),
                 static_cast<apr_size_t>(a.folded), keepalive::kOtherName);
    return OK;
}

}  // namespace

std::string vhost_name(const server_rec* s) {
    const unsigned port = s->port ? s->port : (s->addrs ? s->addrs->host_port : 0);
    std::string name = s->server_hostname ? s->server_hostname : "";
    if (port) name += ':' + std::to_string(port);
    // As slot_name() cuts it, without a copy (this runs for every server).
    if (name.size() >= keepalive::kSlotNameSize) name.resize(keepalive::kSlotNameSize - 1);
    return name;
}

void register_shared_counter_hooks() {
    ap_hook_post_config(metrics_post_config, nullptr, nullptr, APR_HOOK_MIDDLE);
}

CounterValues total_values() { return slots ? slots[kTotalSlot].counters.load() : CounterValues{}; }

std::vector<NamedValues> vhost_values() {
    std::vector<NamedValues> out;
    std::vector<int> seen;
    for (const server_rec* s = ap_server_conf; s && slots; s = s->next) {
        const int slot = server_config(s)->metrics_slot;
        if (slot <= 0 || std::find(seen.begin(), seen.end(), slot) != seen.end()) continue;
        seen.push_back(slot);
        NamedValues v{slots[slot].name, slots[slot].counters.load()};
        if (v.values.counted_anything()) out.push_back(std::move(v));
    }
    // "other" once it has counted, even when no host folds into it any more
    // (a restart freed blocks): its counts must not vanish from the scrape.
    if (slots && std::find(seen.begin(), seen.end(), static_cast<int>(kOtherSlot)) == seen.end()) {
        NamedValues v{slots[kOtherSlot].name, slots[kOtherSlot].counters.load()};
        if (v.values.counted_anything()) out.push_back(std::move(v));
    }
    return out;
}

int metrics_slot(const server_rec* s) { return server_config(s)->metrics_slot; }

void count_response(int slot, bool kept) {
    if (!slots) return;
    slots[kTotalSlot].counters.count_response(kept);
    if (slot > 0) slots[slot].counters.count_response(kept);
}

void count_connection_end(int slot, keepalive::CloseReason reason, std::uint64_t requests_served,
                          std::uint64_t lifetime_us) {
    if (!slots) return;
    slots[kTotalSlot].counters.count_connection_end(reason, requests_served, lifetime_us);
    if (slot > 0) slots[slot].counters.count_connection_end(reason, requests_served, lifetime_us);
}

}  // namespace keepalive::httpd
