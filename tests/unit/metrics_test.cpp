#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/counters.h"

using keepalive::CloseReason;
using keepalive::CounterValues;
using keepalive::NamedValues;
using keepalive::SharedCounters;

namespace {

// Shared memory starts zeroed; so does this.
std::unique_ptr<SharedCounters> zeroed_counters() {
    void* raw = ::operator new(sizeof(SharedCounters));
    std::memset(raw, 0, sizeof(SharedCounters));
    return std::unique_ptr<SharedCounters>(static_cast<SharedCounters*>(raw));
}

std::size_t index(CloseReason r) { return static_cast<std::size_t>(r); }

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

}  // namespace

TEST(Histogram, SlotsFollowTheUpperBounds) {
    EXPECT_EQ(keepalive::histogram_slot(0), 0u);
    EXPECT_EQ(keepalive::histogram_slot(1), 0u);
    EXPECT_EQ(keepalive::histogram_slot(2), 1u);
    EXPECT_EQ(keepalive::histogram_slot(4), 3u);  // le=5
    EXPECT_EQ(keepalive::histogram_slot(1000), 10u);
    EXPECT_EQ(keepalive::histogram_slot(1001), 11u);  // +Inf
}

TEST(SharedCounters, CountResponsesAndConnectionEnds) {
    auto c = zeroed_counters();
    c->count_response(true);
    c->count_response(true);
    c->count_response(false);
    c->count_connection_end(CloseReason::Http10NoOptIn, 1, 2000);
    c->count_connection_end(CloseReason::IdleTimeout, 7, 6500000);
    const CounterValues v = c->load();
    EXPECT_EQ(v.requests, 3u);
    EXPECT_EQ(v.responses_keep, 2u);
    EXPECT_EQ(v.responses_close, 1u);
    EXPECT_EQ(v.connections_closed[index(CloseReason::Http10NoOptIn)], 1u);
    EXPECT_EQ(v.connections_closed[index(CloseReason::IdleTimeout)], 1u);
    EXPECT_EQ(v.requests_per_connection[0], 1u);
    EXPECT_EQ(v.requests_per_connection[keepalive::histogram_slot(7)], 1u);
    EXPECT_EQ(v.requests_per_connection_sum, 8u);
    EXPECT_EQ(v.requests_per_connection_count, 2u);
    EXPECT_EQ(v.connection_lifetime[0], 1u);                              // 2 ms: le=0.1
    EXPECT_EQ(v.connection_lifetime[keepalive::lifetime_slot(6500000)], 1u);  // 6.5 s: le=10
    EXPECT_EQ(v.connection_lifetime_sum_us, 6502000u);
}

TEST(SharedCounters, LifetimeSlotsAreUpperBoundsInclusive) {
    EXPECT_EQ(keepalive::lifetime_slot(0), 0u);
    EXPECT_EQ(keepalive::lifetime_slot(100000), 0u);  // 0.1 s: le=0.1
    EXPECT_EQ(keepalive::lifetime_slot(100001), 1u);
    EXPECT_EQ(keepalive::lifetime_slot(6500000), 4u);  // le=10
    EXPECT_EQ(keepalive::lifetime_slot(3600000000ULL), 10u);
    EXPECT_EQ(keepalive::lifetime_slot(3600000001ULL), 11u);  // +Inf
}

TEST(Prometheus, LifetimeHistogramIsInSecondsAndCountsEveryConnection) {
    CounterValues v;
    v.connection_lifetime[0] = 2;
    v.connection_lifetime[4] = 1;
    v.connection_lifetime_sum_us = 6502000;
    v.requests_per_connection_count = 3;
    const std::string text = keepalive::render_prometheus(v, {});
    EXPECT_NE(text.find("# TYPE keepalive_connection_lifetime_seconds histogram\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_bucket{le=\"0.5\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_bucket{le=\"10\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_bucket{le=\"3600\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_sum 6.502000\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_connection_lifetime_seconds_count 3\n"), std::string::npos);
    const std::string json = keepalive::render_json(v, {});
    EXPECT_NE(json.find("\"connection_lifetime_seconds\":{\"buckets\":{\"0.1\":2,\"0.5\":2,"), std::string::npos)
        << json;
    EXPECT_NE(json.find("\"sum\":6.502000,\"count\":3}"), std::string::npos) << json;
}

TEST(SharedCounters, ConcurrentUpdatesAreNotLost) {
    auto c = zeroed_counters();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 25000; ++i) {
                c->count_response(i % 2 == 0);
                c->count_connection_end(CloseReason::ClientClose, 2, 1000);
            }
        });
    }
    for (auto& t : threads) t.join();
    const CounterValues v = c->load();
    EXPECT_EQ(v.requests, 100000u);
    EXPECT_EQ(v.responses_keep + v.responses_close, 100000u);
    EXPECT_EQ(v.connections_closed[index(CloseReason::ClientClose)], 100000u);
    EXPECT_EQ(v.requests_per_connection_sum, 200000u);
}

// Every line is a comment (# HELP / # TYPE) or a sample whose name, labels and
// value follow the text exposition format 0.0.4.
TEST(Prometheus, EveryLineFollowsTheExpositionFormat) {
    CounterValues total;
    total.requests = 5;
    total.responses_keep = 3;
    total.responses_close = 2;
    total.connections_closed[index(CloseReason::BudgetReached)] = 1;
    total.requests_per_connection[1] = 1;
    total.requests_per_connection_sum = 2;
    total.requests_per_connection_count = 1;
    const std::string text =
        keepalive::render_prometheus(total, {{"a.test:80", total}, {"we\"ird\\name\n:8080", total}});
    const std::regex help(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+)");
    const std::regex type(R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))");
    const std::regex sample(
        R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\\\|\\"|\\n)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\\\|\\"|\\n)*")*\})? [0-9]+(\.[0-9]+)?)");
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    for (const std::string& line : lines(text)) {
        EXPECT_TRUE(std::regex_match(line, help) || std::regex_match(line, type) || std::regex_match(line, sample))
            << line;
    }
}

TEST(Prometheus, TotalsAndVirtualHostsHaveTheirOwnSeries) {
    CounterValues total;
    total.requests = 5;
    total.responses_keep = 3;
    total.responses_close = 2;
    CounterValues vhost;
    vhost.requests = 4;
    const std::string text = keepalive::render_prometheus(total, {{"a.test:80", vhost}});
    EXPECT_NE(text.find("\nkeepalive_requests_total 5\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nkeepalive_requests_total{vhost=\"a.test:80\"} 4\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_responses_total{decision=\"keep\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("\nkeepalive_responses_total{decision=\"close\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE keepalive_requests_per_connection histogram\n"), std::string::npos);
}

TEST(Prometheus, EveryReasonIsListedEvenAtZero) {
    const std::string text = keepalive::render_prometheus(CounterValues{}, {});
    for (const char* reason : {"client-close", "http10-no-optin", "budget-reached", "lifetime-reached", "idle-timeout",
                               "disabled", "disabled-by-condition", "load-shedding", "error-status",
                               "undelimited-body", "server-stopping", "client-gone",
                               "early-close-busy", "early-close-stopping", "drain"}) {
        EXPECT_NE(text.find("keepalive_connections_closed_total{reason=\"" + std::string(reason) + "\"} 0\n"),
                  std::string::npos)
            << reason;
    }
    EXPECT_EQ(text.find("reason=\"none\""), std::string::npos);
}

TEST(Prometheus, HistogramBucketsAreCumulativeAndEndWithInf) {
    CounterValues v;
    v.requests_per_connection[0] = 2;   // le=1
    v.requests_per_connection[2] = 1;   // le=3
    v.requests_per_connection[11] = 4;  // +Inf
    v.requests_per_connection_sum = 2 + 3 + 4 * 5000;
    v.requests_per_connection_count = 7;
    const std::string text = keepalive::render_prometheus(v, {});
    EXPECT_NE(text.find("keepalive_requests_per_connection_bucket{le=\"1\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_requests_per_connection_bucket{le=\"2\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_requests_per_connection_bucket{le=\"3\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_requests_per_connection_bucket{le=\"1000\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_requests_per_connection_bucket{le=\"+Inf\"} 7\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_requests_per_connection_count 7\n"), std::string::npos);
    EXPECT_NE(text.find("keepalive_requests_per_connection_sum 20005\n"), std::string::npos);
}

TEST(Prometheus, LabelValuesAreEscaped) {
    CounterValues counted;
    counted.requests = 1;
    const std::string text = keepalive::render_prometheus(CounterValues{}, {{"a\"b\\c\nd", counted}});
    EXPECT_NE(text.find("vhost=\"a\\\"b\\\\c\\nd\""), std::string::npos) << text;
}

TEST(Counters, AnythingCountedIsAnyNonZeroField) {
    EXPECT_FALSE(CounterValues{}.counted_anything());
    // Each field on its own is enough, even ones no real block moves alone.
    const auto with = [](auto set) {
        CounterValues v;
        set(v);
        return v.counted_anything();
    };
    EXPECT_TRUE(with([](CounterValues& v) { v.requests = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.responses_keep = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.responses_close = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.connections_closed[index(CloseReason::Drain)] = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.requests_per_connection[keepalive::kHistogramSlots - 1] = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.requests_per_connection_sum = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.requests_per_connection_count = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.connection_lifetime[keepalive::kLifetimeSlots - 1] = 1; }));
    EXPECT_TRUE(with([](CounterValues& v) { v.connection_lifetime_sum_us = 1; }));
}

TEST(Prometheus, VirtualHostsThatCountedNothingHaveNoSeries) {
    CounterValues idle;
    CounterValues active;
    active.requests = 3;
    active.responses_keep = 3;
    CounterValues ended;  // only a connection end, no response yet counted
    ended.connections_closed[index(CloseReason::ClientGone)] = 1;
    ended.requests_per_connection_count = 1;
    const std::string text =
        keepalive::render_prometheus(active, {{"idle.test:80", idle}, {"active.test:80", active}, {"end.test:80", ended}});
    EXPECT_EQ(text.find("idle.test"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_requests_total{vhost=\"active.test:80\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("keepalive_connections_closed_total{vhost=\"end.test:80\",reason=\"client-gone\"} 1\n"),
              std::string::npos)
        << text;
    // The whole server's series are there even when nothing at all counted.
    const std::string empty = keepalive::render_prometheus(CounterValues{}, {{"idle.test:80", idle}});
    EXPECT_EQ(empty.find("vhost="), std::string::npos) << empty;
    EXPECT_NE(empty.find("\nkeepalive_requests_total 0\n"), std::string::npos) << empty;
    EXPECT_NE(empty.find("keepalive_connection_lifetime_seconds_count 0\n"), std::string::npos) << empty;
}

TEST(Json, VirtualHostsThatCountedNothingAreLeftOut) {
    CounterValues active;
    active.requests = 2;
    const std::string json =
        keepalive::render_json(active, {{"quiet.test:80", CounterValues{}}, {"active.test:80", active},
                                        {"quiet2.test:80", CounterValues{}}});
    EXPECT_EQ(json.find("quiet"), std::string::npos) << json;
    // One member, no stray comma before or after it.
    EXPECT_NE(json.find("\"vhosts\":[{\"vhost\":\"active.test:80\",\"requests\":2,"), std::string::npos) << json;
    EXPECT_NE(json.find("}}]}"), std::string::npos) << json;
    EXPECT_NE(keepalive::render_json(CounterValues{}, {{"quiet.test:80", CounterValues{}}}).find("\"vhosts\":[]}"),
              std::string::npos);
}

TEST(Json, CarriesTheSameNumbers) {
    CounterValues total;
    total.requests = 9;
    total.responses_keep = 6;
    total.responses_close = 3;
    total.connections_closed[index(CloseReason::ClientClose)] = 2;
    const std::string json = keepalive::render_json(total, {{"a\"b:80", total}});
    EXPECT_NE(json.find("\"total\":{\"requests\":9,\"responses\":{\"keep\":6,\"close\":3}"), std::string::npos)
        << json;
    EXPECT_NE(json.find("\"client-close\":2"), std::string::npos);
    EXPECT_NE(json.find("\"vhost\":\"a\\\"b:80\""), std::string::npos);
    EXPECT_NE(json.find("\"+Inf\":0"), std::string::npos);
}

TEST(StatusAuto, KeyValueLines) {
    CounterValues total;
    total.requests = 4;
    total.requests_per_connection_sum = 4;
    total.requests_per_connection_count = 2;
    const std::string text = keepalive::render_status_auto(total);
    const std::regex line(R"([A-Za-z0-9-]+: [0-9.]+)");
    for (const std::string& l : lines(text)) EXPECT_TRUE(std::regex_match(l, line)) << l;
    EXPECT_NE(text.find("KeepAliveModRequests: 4\n"), std::string::npos);
    EXPECT_NE(text.find("KeepAliveModRequestsPerConnection: 2.00\n"), std::string::npos);
}
