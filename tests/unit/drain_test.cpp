// The drain's schedule (core/drain.h) and what it does to the decision.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/drain.h"
#include "core/policy.h"

using keepalive::CloseReason;
using keepalive::DrainSchedule;
using keepalive::DrainState;

namespace {

constexpr std::int64_t kSecond = 1000000;
constexpr std::int64_t kStart = 1700000000LL * kSecond;

DrainSchedule draining(std::int64_t longest_idle_us, std::int64_t spread_us = -1) {
    DrainSchedule s;
    s.started_us = kStart;
    s.longest_idle_us = longest_idle_us;
    s.spread_us = spread_us;
    return s;
}

keepalive::ResponseFacts http11() {
    keepalive::ResponseFacts f;
    f.framing = keepalive::BodyFraming::Delimited;
    return f;
}

}  // namespace

TEST(Drain, NoDrainChangesNothing) {
    const DrainSchedule none;
    EXPECT_EQ(none.state_at(kStart), DrainState::Idle);
    EXPECT_EQ(none.remaining_us(kStart), 0);
    const keepalive::DrainVerdict v = keepalive::drain_verdict(none, kStart, 42);
    EXPECT_FALSE(v.close);
    EXPECT_EQ(v.cap_us, -1);
    EXPECT_STREQ(keepalive::drain_state_name(DrainState::Idle), "idle");
}

TEST(Drain, CompleteOnceTheLongestPromiseHasPassed) {
    const DrainSchedule s = draining(5 * kSecond);
    EXPECT_EQ(s.complete_at_us(), kStart + 5 * kSecond);
    EXPECT_EQ(s.state_at(kStart + 5 * kSecond - 1), DrainState::Draining);
    EXPECT_EQ(s.state_at(kStart + 5 * kSecond), DrainState::Drained);
    EXPECT_EQ(s.remaining_us(kStart + 2 * kSecond), 3 * kSecond);
    EXPECT_EQ(s.remaining_us(kStart + 9 * kSecond), 0);
}

TEST(Drain, ALongerSpreadWindowDelaysTheEndAShorterOneDoesNot) {
    EXPECT_EQ(draining(5 * kSecond, 20 * kSecond).complete_at_us(), kStart + 20 * kSecond);
    EXPECT_EQ(draining(5 * kSecond, 1 * kSecond).complete_at_us(), kStart + 5 * kSecond);
    // Nothing was ever kept: complete at once.
    EXPECT_EQ(draining(0).state_at(kStart), DrainState::Drained);
}

TEST(Drain, EveryResponseClosesOnceDrained) {
    const DrainSchedule s = draining(5 * kSecond);
    for (std::uint64_t key = 0; key < 1000; ++key) {
        EXPECT_TRUE(keepalive::drain_verdict(s, kStart + 5 * kSecond, key).close) << key;
    }
}

TEST(Drain, MomentsAreSpreadOverTheWindowAndStable) {
    const DrainSchedule s = draining(10 * kSecond);
    // The share of connections whose moment has come grows with time,
    // roughly evenly: about a tenth per second of a 10 s window.
    for (int second = 1; second < 10; ++second) {
        int closing = 0;
        for (std::uint64_t key = 0; key < 10000; ++key) {
            // Keys like the adapter's: accept times a few microseconds apart.
            const std::uint64_t accept_time = static_cast<std::uint64_t>(kStart) + key * 7;
            closing += keepalive::drain_verdict(s, kStart + second * kSecond, accept_time).close ? 1 : 0;
        }
        EXPECT_NEAR(closing, second * 1000, 200) << second;
    }
    // Once a connection's moment has come it stays come.
    for (std::uint64_t key = 0; key < 200; ++key) {
        bool closed = false;
        for (std::int64_t t = kStart; t < kStart + 10 * kSecond; t += kSecond / 4) {
            const bool now = keepalive::drain_verdict(s, t, key).close;
            EXPECT_TRUE(now || !closed) << key;
            closed = now;
        }
    }
}

TEST(Drain, KeptResponsesArePromisedNoIdleWaitPastTheEnd) {
    const DrainSchedule s = draining(5 * kSecond);
    for (std::uint64_t key = 0; key < 500; ++key) {
        const std::int64_t now = kStart + 1500000;
        const keepalive::DrainVerdict v = keepalive::drain_verdict(s, now, key);
        if (!v.close) {
            EXPECT_EQ(v.cap_us, s.complete_at_us() - now) << key;
        }
    }
}

TEST(DrainDecision, TheConnectionsMomentClosesWithReasonDrain) {
    keepalive::ResponseFacts f = http11();
    f.drain_closes = true;
    const keepalive::Decision d = keepalive::decide({}, {}, f);
    EXPECT_FALSE(d.keep());
    EXPECT_EQ(d.reason, CloseReason::Drain);
    EXPECT_STREQ(keepalive::reason_name(CloseReason::Drain), "drain");
}

TEST(DrainDecision, AClientsOwnCloseIsCountedAsItsOwn) {
    keepalive::ResponseFacts f = http11();
    f.drain_closes = true;
    f.request_connection = "close";
    EXPECT_EQ(keepalive::decide({}, {}, f).reason, CloseReason::ClientClose);
}

TEST(DrainDecision, BeforeItsMomentTheTimeoutShrinksToWhatIsLeft) {
    keepalive::ResponseFacts f = http11();
    f.drain_cap_us = 3400000;
    const keepalive::Decision d = keepalive::decide({}, {}, f);
    ASSERT_TRUE(d.keep());
    EXPECT_EQ(d.advertised_timeout_s, 3);
    EXPECT_EQ(d.idle_timeout_us, 3400000);  // prefork, worker: the server closes it then
    EXPECT_EQ(d.keep_alive_header(), "timeout=3, max=100");
}

TEST(DrainDecision, UnderEventOnlyThePromiseShrinks) {
    keepalive::ConnectionLimits event;
    event.per_response_idle_timeout = false;
    keepalive::ResponseFacts f = http11();
    f.drain_cap_us = 2500000;
    const keepalive::Decision d = keepalive::decide(event, {}, f);
    ASSERT_TRUE(d.keep());
    EXPECT_EQ(d.idle_timeout_us, 5000000);  // event's queue waits the vhost's time
    EXPECT_EQ(d.advertised_timeout_s, 2);
}

TEST(DrainDecision, LessThanASecondLeftCloses) {
    keepalive::ResponseFacts f = http11();
    f.drain_cap_us = 999999;
    const keepalive::Decision d = keepalive::decide({}, {}, f);
    EXPECT_FALSE(d.keep());
    EXPECT_EQ(d.reason, CloseReason::Drain);
    EXPECT_TRUE(d.keep_alive_header().empty());
}

TEST(DrainDecision, AShorterOwnTimeoutIsKept) {
    keepalive::ResponseFacts f = http11();
    f.drain_cap_us = 4 * kSecond;
    keepalive::Settings settings;
    settings.idle_timeout_us = 2 * kSecond;
    const keepalive::Decision d = keepalive::decide({}, settings, f);
    ASSERT_TRUE(d.keep());
    EXPECT_EQ(d.advertised_timeout_s, 2);
}
