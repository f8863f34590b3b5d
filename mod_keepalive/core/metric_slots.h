// Which block of counters each virtual host counts into: the table of
// blocks in shared memory and how a configuration's hosts are given theirs.
//
// Part of the policy core: no httpd or APR headers. The adapter
// (httpd/shared_counters.cpp) maps the table and calls assign_slots() in the
// parent at every start and restart, before children are forked; children
// only add to the blocks they were given.
//
// Block 0 is the whole server's total and block 1 the "other" series: hosts
// that found no free block count there. The table's size is fixed when the
// shared memory is made, so a host that finds it full never makes a request
// wait or fail: it folds into "other", and the totals stay exact.
#ifndef MOD_KEEPALIVE_CORE_METRIC_SLOTS_H
#define MOD_KEEPALIVE_CORE_METRIC_SLOTS_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/counters.h"

namespace keepalive {

constexpr std::size_t kSlotNameSize = 128;  // "host:port" and its NUL, truncated to fit
constexpr std::uint32_t kTotalSlot = 0;
constexpr std::uint32_t kOtherSlot = 1;
constexpr std::uint32_t kFirstVhostSlot = 2;
constexpr const char* kOtherName = "other";
// KeepAliveMetricsMaxVhosts' largest value: some 60 MB of shared memory.
constexpr int kMaxMetricsVhosts = 100000;

enum class SlotState : std::uint32_t {
    Free = 0,
    InUse = 1,
    // Its host left the configuration at a restart, but children of older
    // generations, still finishing requests, may be adding to it.
    Retired = 2,
};

// One block as it lives in shared memory; zeroed memory is a free block.
struct MetricSlot {
    char name[kSlotNameSize];
    SlotState state;
    // The first generation whose configuration did not have the host: only
    // children of earlier generations can still count into a Retired block.
    std::int32_t retired_at;
    SharedCounters counters;
};

struct SlotAssignment {
    std::vector<std::uint32_t> slots;  // one per name asked for: its block, or kOtherSlot
    std::size_t folded = 0;            // names that got kOtherSlot (distinct names)
    std::size_t reused = 0;            // retired blocks freed for reuse now
    std::size_t retired_waiting = 0;   // retired blocks some older child may still use
};

// Gives each of `names` (a configuration's hosts; repeats share a block) a
// block of `table` (`table_size` blocks, block 0 and 1 included), for a
// configuration of generation `generation`:
//   - a name that has a block (in use, or retired and back) keeps it, so
//     its counters go on counting;
//   - blocks of names no longer configured are retired at `generation`;
//   - a retired block is freed (zeroed) for reuse only if no child older
//     than its retirement is alive: `oldest_live_generation` is the oldest
//     generation with a child still running (`generation` if none);
//   - a new name takes the first free block below `vhost_limit` blocks for
//     hosts (kFirstVhostSlot + vhost_limit), else folds into kOtherSlot.
SlotAssignment assign_slots(MetricSlot* table, std::uint32_t table_size, std::uint32_t vhost_limit,
                            const std::vector<std::string>& names, std::int32_t generation,
                            std::int32_t oldest_live_generation);

// Copies every block's name, state and counters into a larger table (the
// rest of `to` stays as it is: zeroed, free).
void copy_slots(const MetricSlot* from, std::uint32_t from_size, MetricSlot* to);

// The name, truncated to fit a block as the table stores it.
std::string slot_name(const std::string& name);

}  // namespace keepalive

#endif
