// The load-adaptive mode's pressure model (core/pressure.h).
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "core/counters.h"
#include "core/pressure.h"

using namespace keepalive;

namespace {

// Event, one process of `threads` threads, AsyncRequestWorkerFactor 2.
PressureInputs event_process(int threads, int busy, int connections) {
    PressureInputs in;
    in.worker_occupancy_permille = busy * 1000 / threads;
    in.process_threads = threads;
    in.process_busy_threads = busy;
    in.process_connections = connections;
    return in;
}

AdaptiveSettings adaptive_on() {
    AdaptiveSettings a;
    a.enabled = true;
    a.shrink_at_permille = 500;
    a.close_at_permille = 750;
    a.floor_us = 2000000;
    return a;
}

}  // namespace

TEST(Pressure, PreforkAndWorkerHaveOnlyWorkerOccupancy) {
    PressureInputs in;
    in.worker_occupancy_permille = 625;
    const Pressure p = assess_pressure(in);
    EXPECT_EQ(p.of(PressureInput::WorkerOccupancy), 625);
    EXPECT_EQ(p.of(PressureInput::ProcessWorkers), -1);
    EXPECT_EQ(p.of(PressureInput::ProcessConnections), -1);
    EXPECT_EQ(p.combined, 625);
}

TEST(Pressure, NothingKnownIsUnknown) {
    EXPECT_EQ(assess_pressure(PressureInputs{}).combined, -1);
}

TEST(Pressure, ProcessWorkersIsTheBusyShareOfItsThreads) {
    // Two processes of 4: the server is half busy, the responding process full.
    PressureInputs in = event_process(4, 4, 4);
    in.worker_occupancy_permille = 500;
    const Pressure p = assess_pressure(in);
    EXPECT_EQ(p.of(PressureInput::ProcessWorkers), 1000);
    EXPECT_EQ(p.combined, 1000);
}

TEST(Pressure, ProcessWorkersRemembersARecentlyFullProcess) {
    PressureInputs in = event_process(4, 1, 1);
    in.process_recently_full_permille = 800;
    EXPECT_EQ(assess_pressure(in).of(PressureInput::ProcessWorkers), 800);
    in.process_recently_full_permille = 100;
    EXPECT_EQ(assess_pressure(in).of(PressureInput::ProcessWorkers), 250);
}

TEST(Pressure, ProcessConnectionsAgainstEventsLimit) {
    // 4 threads, 1 busy (3 idle), factor 2: event's limit is 4 + 3 x 2 = 10.
    EXPECT_EQ(assess_pressure(event_process(4, 1, 5)).of(PressureInput::ProcessConnections), 500);
    EXPECT_EQ(assess_pressure(event_process(4, 1, 10)).of(PressureInput::ProcessConnections), 1000);
    EXPECT_EQ(assess_pressure(event_process(4, 1, 30)).of(PressureInput::ProcessConnections), 1000);
    // Factor 1: 4 + 3 = 7.
    PressureInputs in = event_process(4, 1, 7);
    in.async_worker_factor = 1;
    EXPECT_EQ(assess_pressure(in).of(PressureInput::ProcessConnections), 1000);
    // No idle thread: the limit is the threads alone, which the busy ones hold.
    EXPECT_EQ(assess_pressure(event_process(4, 4, 4)).of(PressureInput::ProcessConnections), 1000);
    // Reported, not combined: 1 of 4 threads busy.
    EXPECT_EQ(assess_pressure(event_process(4, 1, 10)).combined, 250);
}

TEST(Pressure, NotAcceptingIsAtTheConnectionLimit) {
    PressureInputs in = event_process(4, 1, 1);
    in.process_not_accepting = true;
    EXPECT_EQ(assess_pressure(in).of(PressureInput::ProcessConnections), 1000);
    EXPECT_EQ(assess_pressure(in).combined, 250);
}

TEST(Pressure, BadCountsAreClamped) {
    PressureInputs in = event_process(4, 9, -3);
    in.worker_occupancy_permille = 4000;
    in.process_recently_full_permille = 1 << 30;
    in.async_worker_factor = -5;
    const Pressure p = assess_pressure(in);
    EXPECT_EQ(p.of(PressureInput::WorkerOccupancy), 1000);
    EXPECT_EQ(p.of(PressureInput::ProcessWorkers), 1000);
    EXPECT_EQ(p.of(PressureInput::ProcessConnections), 0);
    in = event_process(3, -2, std::numeric_limits<int>::max());
    in.async_worker_factor = std::numeric_limits<int>::max();
    EXPECT_EQ(assess_pressure(in).of(PressureInput::ProcessWorkers), 0);
    // 3 idle threads x a huge factor: no overflow, a third of the limit.
    EXPECT_EQ(assess_pressure(in).of(PressureInput::ProcessConnections), 333);
}

TEST(PressureMemory, APeakIsHeldThenFades) {
    PressureMemory m;  // held 2 s, then fading over 5 s
    EXPECT_EQ(m.observe(1000, 10000000, 2000000, 5000000), 1000);
    EXPECT_EQ(m.recall(11999999, 2000000, 5000000), 1000);
    EXPECT_EQ(m.recall(13000000, 2000000, 5000000), 800);
    EXPECT_EQ(m.recall(14500000, 2000000, 5000000), 500);
    EXPECT_EQ(m.recall(17000000, 2000000, 5000000), 0);
    // A lower value does not replace the standing peak; a higher one does.
    EXPECT_EQ(m.observe(0, 13000000, 2000000, 5000000), 800);
    EXPECT_EQ(m.observe(900, 13000000, 2000000, 5000000), 900);
    EXPECT_EQ(m.recall(16000000, 2000000, 5000000), 700);
    // A clock that goes back, no fade, no hold, nothing seen.
    EXPECT_EQ(m.recall(0, 2000000, 5000000), 900);
    EXPECT_EQ(m.recall(15000001, 2000000, 0), 0);
    EXPECT_EQ(m.recall(13000000, 0, 5000000), 900);
    EXPECT_EQ(PressureMemory{}.recall(1, 2000000, 5000000), 0);
}

TEST(AdaptedTimeout, ShrinksLinearlyBetweenTheThresholds) {
    const AdaptiveSettings a = adaptive_on();
    EXPECT_EQ(adapted_idle_timeout(5000000, a, 500), 5000000);
    EXPECT_EQ(adapted_idle_timeout(5000000, a, 625), 3500000);
    EXPECT_EQ(adapted_idle_timeout(5000000, a, 900), 2000000);
    EXPECT_EQ(adapted_idle_timeout(1000000, a, 700), 1000000);  // below the floor: unchanged
}

TEST(TimeoutScale, OneUnchangedZeroClosing) {
    const AdaptiveSettings a = adaptive_on();
    const auto at = [](int occupancy) {
        PressureInputs in;
        in.worker_occupancy_permille = occupancy;
        return assess_pressure(in);
    };
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, a, Pressure{}), 1.0);
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, a, at(400)), 1.0);
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, a, at(625)), 0.7);
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, a, at(750)), 0.0);
    EXPECT_DOUBLE_EQ(timeout_scale(0, a, at(600)), 1.0);
    AdaptiveSettings off = a;
    off.enabled = false;
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, off, at(1000)), 1.0);
}

TEST(TimeoutScale, FullOccupancyWithNobodyWaitingIsTheFloor) {
    PressureInputs in;
    in.worker_occupancy_permille = 1000;
    in.accept_queue_waiting = 0;
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, adaptive_on(), assess_pressure(in)), 0.4);  // 2 s of 5
    in.accept_queue_waiting = 1;
    in.client_waited = true;
    EXPECT_DOUBLE_EQ(timeout_scale(5000000, adaptive_on(), assess_pressure(in)), 0.0);
}

TEST(AcceptQueue, UnknownLeavesOccupancyToShed) {
    PressureInputs in;
    in.worker_occupancy_permille = 800;
    const Pressure p = assess_pressure(in);
    EXPECT_EQ(p.of(PressureInput::AcceptQueue), -1);
    EXPECT_EQ(p.accept_queue_waiting, -1);
    EXPECT_EQ(p.combined, 800);
    EXPECT_EQ(p.shedding, 800);
}

TEST(AcceptQueue, AnEmptyQueueHoldsAboveTheOccupancyThresholds) {
    // Every worker busy or holding an idle connection, nobody waiting:
    // timeouts shrink to the floor, but nothing is closed.
    PressureInputs in;
    in.worker_occupancy_permille = 1000;
    in.accept_queue_waiting = 0;
    const Pressure p = assess_pressure(in);
    EXPECT_EQ(p.of(PressureInput::AcceptQueue), 0);
    EXPECT_EQ(p.combined, 1000);
    EXPECT_EQ(p.shedding, 0);
}

TEST(AcceptQueue, AWaitingClientSheds) {
    PressureInputs in;
    in.worker_occupancy_permille = 100;  // whatever occupancy says
    in.accept_queue_waiting = 1;
    in.client_waited = true;
    const Pressure p = assess_pressure(in);
    EXPECT_EQ(p.of(PressureInput::AcceptQueue), 1000);
    EXPECT_EQ(p.accept_queue_waiting, 1);
    EXPECT_EQ(p.combined, 1000);
    EXPECT_EQ(p.shedding, 1000);
}

TEST(AcceptQueue, AClientOnItsWayToAReadyWorkerDoesNotCount) {
    // A new connection sits in the queue until a worker in accept() takes
    // it: only clients beyond the ready workers wait for one.
    PressureInputs in;
    in.worker_occupancy_permille = 500;
    in.accept_queue_waiting = 2;
    in.ready_workers = 2;
    EXPECT_FALSE(client_unserved(in));
    Pressure p = assess_pressure(in);
    EXPECT_FALSE(p.client_unserved);
    EXPECT_EQ(p.accept_queue_waiting, 2);
    in.accept_queue_waiting = 3;
    EXPECT_TRUE(client_unserved(in));
    EXPECT_TRUE(assess_pressure(in).client_unserved);
}

TEST(WaitTracker, AMomentaryWaitDoesNotCount) {
    WaitTracker t;
    EXPECT_FALSE(t.observe(false, 0, 20000));
    EXPECT_FALSE(t.observe(true, 10000, 20000));   // seen once, 10 ms after the last sample
    EXPECT_FALSE(t.observe(false, 20000, 20000));  // served by the next
    EXPECT_FALSE(t.observe(true, 30000, 20000));
    EXPECT_FALSE(t.observe(true, 40000, 20000));   // 10 ms unserved
    EXPECT_TRUE(t.observe(true, 50000, 20000));    // 20 ms: it counts
    EXPECT_FALSE(t.observe(false, 60000, 20000));
}

TEST(WaitTracker, JudgingRecordsNothing) {
    WaitTracker t;
    EXPECT_FALSE(t.judge(true, 0, 20000));
    EXPECT_FALSE(t.observe(true, 0, 20000));
    EXPECT_FALSE(t.judge(true, 10000, 20000));
    EXPECT_TRUE(t.judge(true, 20000, 20000));
    EXPECT_FALSE(t.judge(false, 20000, 20000));  // served now
    EXPECT_TRUE(t.observe(true, 20000, 20000));   // the judgement moved nothing
}

TEST(WaitTracker, AWaitCountsFromItsFirstSighting) {
    WaitTracker t;
    EXPECT_FALSE(t.observe(true, 1000000, 20000));  // after a quiet second: seen once
    EXPECT_TRUE(t.observe(true, 1020000, 20000));
}

TEST(AcceptQueue, AMomentaryWaitShedsOnlyWithOccupancyAboveTheThreshold) {
    // A client in the queue with no worker ready, not yet for two
    // intervals: occupancy decides, as where the queue is unknown.
    PressureInputs in;
    in.worker_occupancy_permille = 800;
    in.accept_queue_waiting = 1;
    Pressure p = assess_pressure(in);
    EXPECT_TRUE(p.client_unserved);
    EXPECT_EQ(p.of(PressureInput::AcceptQueue), 0);
    EXPECT_EQ(p.shedding, 800);
    // A worker ready for it: occupancy only shrinks.
    in.ready_workers = 1;
    p = assess_pressure(in);
    EXPECT_FALSE(p.client_unserved);
    EXPECT_EQ(p.shedding, 0);
    EXPECT_EQ(p.combined, 800);
    // Waiting two intervals: sheds at any occupancy.
    in.ready_workers = 0;
    in.worker_occupancy_permille = 300;
    in.client_waited = true;
    EXPECT_EQ(assess_pressure(in).shedding, 1000);
}

TEST(AcceptQueue, EventProcessWorkersStillShed) {
    PressureInputs in = event_process(4, 4, 4);
    in.accept_queue_waiting = 0;
    EXPECT_EQ(assess_pressure(in).shedding, 1000);
}

TEST(EventWorkerFactor, AsEventAppliesIt) {
    EXPECT_EQ(event_worker_factor("2"), 2);
    EXPECT_EQ(event_worker_factor("1.9"), 1);
    EXPECT_EQ(event_worker_factor("2.5"), 2);
    EXPECT_EQ(event_worker_factor("0.2"), 1);  // at least 16 sixteenths
    EXPECT_EQ(event_worker_factor("8"), 8);
    EXPECT_EQ(event_worker_factor("1e300"), 1000000);
}

TEST(EventWorkerFactor, RefusesWhatEventRefusesOrCannotUse) {
    for (const char* bad : {"", "0", "-1", "two", "2x", "nan", "inf", " "}) {
        EXPECT_FALSE(event_worker_factor(bad).has_value()) << bad;
    }
    EXPECT_FALSE(event_worker_factor(std::string(100, '1')).has_value());
}

TEST(PressureGauges, PrometheusHasKnownInputsCombinedAndScales) {
    PressureGauges g;
    g.pressure = assess_pressure(event_process(4, 1, 5));
    g.timeout_scale = 0.7;
    g.vhost_scales = {{"a\"b:80", 1.0}};
    const std::string text = render_pressure_prometheus(g);
    EXPECT_NE(text.find("# TYPE keepalive_pressure_ratio gauge\n"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_pressure_ratio{input=\"worker_occupancy\"} 0.25\n"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_pressure_ratio{input=\"process_workers\"} 0.25\n"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_pressure_ratio{input=\"process_connections\"} 0.5\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_pressure_combined_ratio 0.25\n"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_pressure_shedding_ratio 0.25\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("keepalive_accept_queue_clients"), std::string::npos) << text;  // unknown
    EXPECT_NE(text.find("keepalive_adaptive_timeout_scale_ratio 0.7\n"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_adaptive_timeout_scale_ratio{vhost=\"a\\\"b:80\"} 1\n"), std::string::npos)
        << text;
    // Prefork: no process inputs at all.
    g.pressure = assess_pressure(PressureInputs{});
    const std::string none = render_pressure_prometheus(g);
    EXPECT_EQ(none.find("keepalive_pressure_ratio{"), std::string::npos) << none;
    EXPECT_EQ(none.find("keepalive_pressure_combined_ratio"), std::string::npos) << none;
    // The accept queue, known: its input and the clients waiting.
    PressureInputs queued;
    queued.worker_occupancy_permille = 500;
    queued.accept_queue_waiting = 3;
    queued.client_waited = true;
    g.pressure = assess_pressure(queued);
    const std::string waiting = render_pressure_prometheus(g);
    EXPECT_NE(waiting.find("keepalive_pressure_ratio{input=\"accept_queue\"} 1\n"), std::string::npos) << waiting;
    EXPECT_NE(waiting.find("# TYPE keepalive_accept_queue_clients gauge\nkeepalive_accept_queue_clients 3\n"),
              std::string::npos)
        << waiting;
}

TEST(PressureGauges, JsonMembersGoIntoTheObject) {
    PressureGauges g;
    g.pressure = assess_pressure(event_process(4, 4, 4));
    g.timeout_scale = 0.0;
    g.vhost_scales = {{"x:80", 0.0}, {"y:80", 0.5}};
    const std::string json = keepalive::render_json(keepalive::CounterValues{}, {}, render_pressure_json_members(g));
    const std::string members =
        ",\"pressure\":{\"worker_occupancy\":1,\"process_workers\":1,"
        "\"process_connections\":1,\"combined\":1,\"shedding\":1,\"accept_queue_clients\":null},\"timeout_scale\":{\"total\":0,\"vhosts\":{\"x:80\":0,"
        "\"y:80\":0.5}}}\n";
    ASSERT_GE(json.size(), members.size());
    EXPECT_EQ(json.substr(json.size() - members.size()), members) << json;
}
