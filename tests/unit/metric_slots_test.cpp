#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/metric_slots.h"

using keepalive::assign_slots;
using keepalive::kFirstVhostSlot;
using keepalive::kOtherSlot;
using keepalive::MetricSlot;
using keepalive::SlotState;

namespace {

// A table as shared memory starts: zeroed.
struct Table {
    explicit Table(std::uint32_t n) : size(n), raw(new unsigned char[sizeof(MetricSlot) * n]) {
        std::memset(raw.get(), 0, sizeof(MetricSlot) * n);
    }
    MetricSlot* slots() { return reinterpret_cast<MetricSlot*>(raw.get()); }
    MetricSlot& operator[](std::uint32_t i) { return slots()[i]; }
    std::uint32_t size;
    std::unique_ptr<unsigned char[]> raw;
};

constexpr std::uint32_t kNoLimit = 1000;

}  // namespace

TEST(MetricSlots, EachNameGetsABlockAndRepeatsShareIt) {
    Table t(8);
    const auto a = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "b:80", "a:80"}, 0, 0);
    ASSERT_EQ(a.slots.size(), 3u);
    EXPECT_EQ(a.slots[0], kFirstVhostSlot);
    EXPECT_EQ(a.slots[1], kFirstVhostSlot + 1);
    EXPECT_EQ(a.slots[2], a.slots[0]);
    EXPECT_EQ(a.folded, 0u);
    EXPECT_STREQ(t[kOtherSlot].name, "other");
    EXPECT_STREQ(t[a.slots[1]].name, "b:80");
    EXPECT_EQ(t[a.slots[1]].state, SlotState::InUse);
}

TEST(MetricSlots, ANameKeepsItsBlockAndCountsAcrossRestarts) {
    Table t(8);
    const auto first = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "b:80"}, 0, 0);
    t[first.slots[1]].counters.count_response(true);
    // b first now, and a new host between: b keeps its block and its count.
    const auto second = assign_slots(t.slots(), t.size, kNoLimit, {"b:80", "c:80", "a:80"}, 1, 0);
    EXPECT_EQ(second.slots[0], first.slots[1]);
    EXPECT_EQ(second.slots[2], first.slots[0]);
    EXPECT_EQ(t[second.slots[0]].counters.load().requests, 1u);
    EXPECT_EQ(t[second.slots[1]].counters.load().requests, 0u);
}

TEST(MetricSlots, NamesBeyondTheLimitFoldIntoOther) {
    Table t(16);
    const auto a = assign_slots(t.slots(), t.size, 2, {"a:80", "b:80", "c:80", "d:80", "c:80"}, 0, 0);
    EXPECT_EQ(a.slots[0], kFirstVhostSlot);
    EXPECT_EQ(a.slots[1], kFirstVhostSlot + 1);
    EXPECT_EQ(a.slots[2], kOtherSlot);
    EXPECT_EQ(a.slots[3], kOtherSlot);
    EXPECT_EQ(a.slots[4], kOtherSlot);
    EXPECT_EQ(a.folded, 2u);  // c and d, each once
    EXPECT_EQ(t[kFirstVhostSlot + 2].state, SlotState::Free);
}

TEST(MetricSlots, TheTableSizeBoundsToo) {
    Table t(kFirstVhostSlot + 1);
    const auto a = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "b:80"}, 0, 0);
    EXPECT_EQ(a.slots[0], kFirstVhostSlot);
    EXPECT_EQ(a.slots[1], kOtherSlot);
    EXPECT_EQ(a.folded, 1u);
}

TEST(MetricSlots, ARemovedHostsBlockWaitsForOlderChildren) {
    Table t(kFirstVhostSlot + 2);
    const auto g0 = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "b:80"}, 0, 0);
    t[g0.slots[1]].counters.count_response(false);
    // Restart to generation 1 without b, while generation 0's children
    // finish: b's block is retired, not reused, and c finds no room.
    const auto g1 = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "c:80"}, 1, 0);
    EXPECT_EQ(t[g0.slots[1]].state, SlotState::Retired);
    EXPECT_EQ(t[g0.slots[1]].retired_at, 1);
    EXPECT_EQ(g1.slots[1], kOtherSlot);
    EXPECT_EQ(g1.retired_waiting, 1u);
    EXPECT_EQ(g1.reused, 0u);
    EXPECT_EQ(t[g0.slots[1]].counters.load().requests, 1u);
    // Generation 2 while a generation-0 child is still there: still waiting.
    const auto g2 = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "c:80"}, 2, 0);
    EXPECT_EQ(g2.slots[1], kOtherSlot);
    EXPECT_EQ(g2.retired_waiting, 1u);
    // Generation 3 with only generation 1 and 2's children left: nobody
    // older than the retirement, the block is zeroed and c takes it.
    const auto g3 = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "c:80"}, 3, 1);
    EXPECT_EQ(g3.reused, 1u);
    EXPECT_EQ(g3.slots[1], g0.slots[1]);
    EXPECT_STREQ(t[g3.slots[1]].name, "c:80");
    EXPECT_EQ(t[g3.slots[1]].counters.load().requests, 0u);
    EXPECT_EQ(t[g3.slots[1]].state, SlotState::InUse);
}

TEST(MetricSlots, WithNoOldChildrenARemovedHostsBlockIsReusedAtOnce) {
    Table t(kFirstVhostSlot + 1);
    assign_slots(t.slots(), t.size, kNoLimit, {"a:80"}, 0, 0);
    // A full restart (old children already gone): oldest live == generation.
    const auto a = assign_slots(t.slots(), t.size, kNoLimit, {"b:80"}, 1, 1);
    EXPECT_EQ(a.slots[0], kFirstVhostSlot);
    EXPECT_EQ(a.reused, 1u);
    EXPECT_STREQ(t[kFirstVhostSlot].name, "b:80");
}

TEST(MetricSlots, AHostBackBeforeReuseHasItsCountersAgain) {
    Table t(8);
    const auto g0 = assign_slots(t.slots(), t.size, kNoLimit, {"a:80", "b:80"}, 0, 0);
    t[g0.slots[1]].counters.count_response(true);
    assign_slots(t.slots(), t.size, kNoLimit, {"a:80"}, 1, 0);
    const auto g2 = assign_slots(t.slots(), t.size, kNoLimit, {"b:80", "a:80"}, 2, 0);
    EXPECT_EQ(g2.slots[0], g0.slots[1]);
    EXPECT_EQ(t[g2.slots[0]].state, SlotState::InUse);
    EXPECT_EQ(t[g2.slots[0]].counters.load().requests, 1u);
    EXPECT_EQ(g2.retired_waiting, 0u);
}

TEST(MetricSlots, LongNamesAreTruncatedAlike) {
    Table t(8);
    const std::string long_name(300, 'x');
    const auto a = assign_slots(t.slots(), t.size, kNoLimit, {long_name + ":80", long_name + ":81"}, 0, 0);
    // Both truncate to the same 127 bytes: one block, as the labels would be equal.
    EXPECT_EQ(a.slots[0], a.slots[1]);
    EXPECT_EQ(std::strlen(t[a.slots[0]].name), keepalive::kSlotNameSize - 1);
}

TEST(MetricSlots, CopyingIntoALargerTableKeepsEverything) {
    Table small(kFirstVhostSlot + 2);
    const auto a = assign_slots(small.slots(), small.size, kNoLimit, {"a:80", "b:80"}, 0, 0);
    small[a.slots[1]].counters.count_connection_end(keepalive::CloseReason::IdleTimeout, 3, 1000);
    assign_slots(small.slots(), small.size, kNoLimit, {"a:80"}, 1, 0);  // b retired
    Table big(16);
    keepalive::copy_slots(small.slots(), small.size, big.slots());
    EXPECT_STREQ(big[a.slots[1]].name, "b:80");
    EXPECT_EQ(big[a.slots[1]].state, SlotState::Retired);
    EXPECT_EQ(big[a.slots[1]].retired_at, 1);
    EXPECT_EQ(big[a.slots[1]].counters.load().requests_per_connection_sum, 3u);
    const auto again = assign_slots(big.slots(), big.size, kNoLimit, {"a:80", "c:80"}, 1, 0);
    EXPECT_EQ(again.slots[1], kFirstVhostSlot + 2);  // the first block the copy left free
}
