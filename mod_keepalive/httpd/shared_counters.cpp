#include "httpd/shared_counters.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include "httpd/config.h"
#include "core/counters.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

constexpr std::size_t kNameSize = 128;

// One block of counters and the virtual host it belongs to. Slot 0 is the
// whole server's total.
struct Slot {
    char name[kNameSize];
    std::uint32_t in_use;
    SharedCounters counters;
};

// Kept across graceful restarts (ap_retained_data), so counters keep counting
// when the configuration is reloaded, as Prometheus counters should.
struct Retained {
    apr_shm_t* shm;
    Slot* slots;
    std::uint32_t capacity;
};

// The retained data's key names the slot layout: a graceful restart that
// loads a build of the module with another layout (more close reasons)
// starts a segment of its own instead of misreading the old one.
const std::string& retained_key() {
    static const std::string key = "mod_keepalive metrics/" + std::to_string(sizeof(Slot));
    return key;
}

// Set in the parent at post_config; children inherit the mapping.
Slot* slots = nullptr;
std::uint32_t capacity = 0;

Slot* create_slots(apr_pool_t* process_pool, Retained* retained, std::uint32_t wanted, const server_rec* s) {
    apr_shm_t* shm = nullptr;
    const apr_size_t size = sizeof(Slot) * wanted;
    const apr_status_t rv = apr_shm_create(&shm, size, nullptr, process_pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "mod_keepalive: cannot create %zu bytes of shared memory for counters",
                     static_cast<std::size_t>(size));
        return nullptr;
    }
    // An anonymous segment comes zero-filled (APR maps it anonymously, from
    // /dev/zero or with shmget, all of which zero it): no memset, which
    // would also bring every page of it into the parent (11 MB at 10,000
    // virtual hosts) before any is used.
    auto* fresh = static_cast<Slot*>(apr_shm_baseaddr_get(shm));
    // Growing (more virtual hosts after a restart than ever before): carry the
    // counts over. The old segment stays mapped for children of the previous
    // generation that are still finishing their requests.
    for (std::uint32_t i = 0; retained->slots && i < retained->capacity; ++i) {
        const Slot& old = retained->slots[i];
        Slot& now = fresh[i];
        std::memcpy(now.name, old.name, kNameSize);
        now.in_use = old.in_use;
        const CounterValues v = old.counters.load();
        now.counters.responses_keep = v.responses_keep;
        now.counters.responses_close = v.responses_close;
        for (std::size_t r = 0; r < kCloseReasonCount; ++r) now.counters.connections_closed[r] = v.connections_closed[r];
        for (std::size_t b = 0; b < kHistogramSlots; ++b) {
            now.counters.requests_per_connection[b] = v.requests_per_connection[b];
        }
        now.counters.requests_per_connection_sum = v.requests_per_connection_sum;
        now.counters.requests_per_connection_count = v.requests_per_connection_count;
        for (std::size_t b = 0; b < kLifetimeSlots; ++b) now.counters.connection_lifetime[b] = v.connection_lifetime[b];
        now.counters.connection_lifetime_sum_us = v.connection_lifetime_sum_us;
    }
    retained->shm = shm;
    retained->slots = fresh;
    retained->capacity = wanted;
    return fresh;
}

// The blocks in use by name, and the lowest free one, built once per
// post_config: giving every server its block is then linear in the number
// of servers. (A scan of every block for every server read the whole
// segment once per server: seconds at 10,000 virtual hosts, twice per
// start; bench/RESULTS.md, "Scale: many virtual hosts and large pools".)
class SlotIndex {
  public:
    SlotIndex() {
        by_name_.reserve(capacity);
        for (std::uint32_t i = 1; i < capacity; ++i) {
            if (slots[i].in_use) by_name_.emplace(std::string_view(slots[i].name), i);  // the first of a name wins
        }
    }

    // The block of `name`, claimed if it has none; 0 (the total's) when
    // every block is taken.
    int find_or_claim(const std::string& name) {
        const auto found = by_name_.find(name);
        if (found != by_name_.end()) return static_cast<int>(found->second);
        while (next_free_ < capacity && slots[next_free_].in_use) ++next_free_;
        if (next_free_ >= capacity) return 0;
        std::memcpy(slots[next_free_].name, name.c_str(), name.size() + 1);
        slots[next_free_].in_use = 1;
        by_name_.emplace(std::string_view(slots[next_free_].name), next_free_);
        return static_cast<int>(next_free_++);
    }

  private:
    std::unordered_map<std::string_view, std::uint32_t> by_name_;  // names in the shared blocks
    std::uint32_t next_free_ = 1;
};

ServerConfig* server_config(const server_rec* s) {
    return static_cast<ServerConfig*>(ap_get_module_config(s->module_config, &keepalive_module));
}

// post_config, in the parent: creates (first start) or finds again
// (graceful restart) the shared counters and gives every server its block.
int metrics_post_config(apr_pool_t*, apr_pool_t*, apr_pool_t*, server_rec* main_server) {
    std::uint32_t servers = 0;
    for (const server_rec* s = main_server; s; s = s->next) ++servers;
    // Room for the total, every server, and as many again for servers that a
    // later graceful restart may add.
    const std::uint32_t wanted = 1 + 2 * servers + 8;

    auto* retained = static_cast<Retained*>(ap_retained_data_get(retained_key().c_str()));
    if (!retained) {
        retained = static_cast<Retained*>(ap_retained_data_create(retained_key().c_str(), sizeof(Retained)));
    }
    if (!retained->slots || retained->capacity < 1 + servers) {
        if (!create_slots(main_server->process->pool, retained, std::max(wanted, retained->capacity * 2), main_server)) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    slots = retained->slots;
    capacity = retained->capacity;
    slots[0].in_use = 1;
    SlotIndex index;
    for (server_rec* s = main_server; s; s = s->next) server_config(s)->metrics_slot = index.find_or_claim(vhost_name(s));
    return OK;
}

}  // namespace

std::string vhost_name(const server_rec* s) {
    const unsigned port = s->port ? s->port : (s->addrs ? s->addrs->host_port : 0);
    std::string name = s->server_hostname ? s->server_hostname : "";
    if (port) name += ':' + std::to_string(port);
    if (name.size() >= kNameSize) name.resize(kNameSize - 1);
    return name;
}

void register_shared_counter_hooks() {
    ap_hook_post_config(metrics_post_config, nullptr, nullptr, APR_HOOK_MIDDLE);
}

CounterValues total_values() { return slots ? slots[0].counters.load() : CounterValues{}; }

// Every virtual host's block once, in configuration order.
std::vector<NamedValues> vhost_values() {
    std::vector<NamedValues> out;
    std::vector<int> seen;
    for (const server_rec* s = ap_server_conf; s && slots; s = s->next) {
        const int slot = server_config(s)->metrics_slot;
        if (slot <= 0 || std::find(seen.begin(), seen.end(), slot) != seen.end()) continue;
        seen.push_back(slot);
        out.push_back({slots[slot].name, slots[slot].counters.load()});
    }
    return out;
}

int metrics_slot(const server_rec* s) { return server_config(s)->metrics_slot; }

void count_response(int slot, bool kept) {
    if (!slots) return;
    slots[0].counters.count_response(kept);
    if (slot > 0) slots[slot].counters.count_response(kept);
}

void count_connection_end(int slot, keepalive::CloseReason reason, std::uint64_t requests_served,
                          std::uint64_t lifetime_us) {
    if (!slots) return;
    slots[0].counters.count_connection_end(reason, requests_served, lifetime_us);
    if (slot > 0) slots[slot].counters.count_connection_end(reason, requests_served, lifetime_us);
}

}  // namespace keepalive::httpd
