#include "core/metric_slots.h"

#include <algorithm>
#include <cstring>
#include <string_view>
#include <unordered_map>

namespace keepalive {
namespace {

bool holds(const MetricSlot& slot) { return slot.state == SlotState::InUse || slot.state == SlotState::Retired; }

void set_name(MetricSlot& slot, const std::string& name) {
    std::memset(slot.name, 0, kSlotNameSize);
    std::memcpy(slot.name, name.data(), std::min(name.size(), kSlotNameSize - 1));
}

// Only called on a block no process adds to (free, or retired with every
// older child gone), in the parent before it forks: plain stores suffice.
void clear(MetricSlot& slot) { std::memset(static_cast<void*>(&slot), 0, sizeof slot); }

void copy_counters(const SharedCounters& from, SharedCounters& to) {
    const CounterValues v = from.load();
    to.responses_keep = v.responses_keep;
    to.responses_close = v.responses_close;
    for (std::size_t r = 0; r < kCloseReasonCount; ++r) to.connections_closed[r] = v.connections_closed[r];
    for (std::size_t b = 0; b < kHistogramSlots; ++b) to.requests_per_connection[b] = v.requests_per_connection[b];
    to.requests_per_connection_sum = v.requests_per_connection_sum;
    to.requests_per_connection_count = v.requests_per_connection_count;
    for (std::size_t b = 0; b < kLifetimeSlots; ++b) to.connection_lifetime[b] = v.connection_lifetime[b];
    to.connection_lifetime_sum_us = v.connection_lifetime_sum_us;
}

}  // namespace

std::string slot_name(const std::string& name) { return name.substr(0, kSlotNameSize - 1); }

SlotAssignment assign_slots(MetricSlot* table, std::uint32_t table_size, std::uint32_t vhost_limit,
                            const std::vector<std::string>& names, std::int32_t generation,
                            std::int32_t oldest_live_generation) {
    SlotAssignment out;
    // name -> block, 0 until found. Views into `names`, cut as slot_name()
    // cuts them: no string is copied per virtual host (at 10,000 of them,
    // copies were most of the module's start-up cost).
    const auto key = [](const std::string& name) { return std::string_view(name).substr(0, kSlotNameSize - 1); };
    std::unordered_map<std::string_view, std::uint32_t> wanted;
    wanted.reserve(names.size());
    for (const std::string& name : names) wanted.emplace(key(name), 0);

    table[kTotalSlot].state = SlotState::InUse;
    set_name(table[kOtherSlot], kOtherName);
    table[kOtherSlot].state = SlotState::InUse;

    // The blocks held already: kept by the names still configured, retired
    // for the others. A block retired at an earlier restart whose children
    // are all gone is freed.
    for (std::uint32_t i = kFirstVhostSlot; i < table_size; ++i) {
        MetricSlot& slot = table[i];
        if (!holds(slot)) continue;
        const auto it = wanted.find(std::string_view(slot.name));
        if (it != wanted.end() && it->second == 0) {
            it->second = i;
            slot.state = SlotState::InUse;
            slot.retired_at = 0;
            continue;
        }
        if (slot.state == SlotState::InUse) {
            slot.state = SlotState::Retired;
            slot.retired_at = generation;
        }
        if (oldest_live_generation >= slot.retired_at) {
            clear(slot);
            ++out.reused;
        } else {
            ++out.retired_waiting;
        }
    }

    // New names, in the order given (httpd's server list: the main server,
    // then the virtual hosts last-defined first), take the lowest free blocks.
    const std::uint32_t end = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(table_size, std::uint64_t{kFirstVhostSlot} + vhost_limit));
    std::uint32_t next_free = kFirstVhostSlot;
    out.slots.reserve(names.size());
    for (const std::string& name : names) {
        std::uint32_t& slot = wanted[key(name)];
        if (slot == 0) {
            while (next_free < end && table[next_free].state != SlotState::Free) ++next_free;
            if (next_free < end) {
                slot = next_free;
                set_name(table[slot], name);
                table[slot].state = SlotState::InUse;
            } else {
                slot = kOtherSlot;
                ++out.folded;
            }
        }
        out.slots.push_back(slot);
    }
    return out;
}

void copy_slots(const MetricSlot* from, std::uint32_t from_size, MetricSlot* to) {
    for (std::uint32_t i = 0; i < from_size; ++i) {
        std::memcpy(to[i].name, from[i].name, kSlotNameSize);
        to[i].state = from[i].state;
        to[i].retired_at = from[i].retired_at;
        copy_counters(from[i].counters, to[i].counters);
    }
}

}  // namespace keepalive
