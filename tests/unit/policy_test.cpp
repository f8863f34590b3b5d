// Truth table of the keep-alive policy: one row per rule, each checked on its
// own against a response that would otherwise be kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

#include "core/policy.h"
#include "core/wire_format.h"

using keepalive::BodyFraming;
using keepalive::CloseReason;
using keepalive::ConnectionLimits;
using keepalive::Decision;
using keepalive::HeaderMode;
using keepalive::ResponseFacts;
using keepalive::Settings;
using keepalive::Verdict;

namespace {

ConnectionLimits limits(std::int64_t timeout_us = 5000000, int max = 100, bool on = true) {
    ConnectionLimits l;
    l.keep_alive = on;
    l.idle_timeout_us = timeout_us;
    l.max_requests = max;
    return l;
}

ResponseFacts http11() {
    ResponseFacts f;
    f.http_major = 1;
    f.http_minor = 1;
    f.framing = BodyFraming::Delimited;
    return f;
}

ResponseFacts http10(std::string_view connection = "") {
    ResponseFacts f = http11();
    f.http_minor = 0;
    f.request_connection = connection;
    return f;
}

// Core's directives alone, none of the module's. (With Settings, calls find
// keepalive::decide by argument-dependent lookup.)
Decision decide(const ConnectionLimits& l, const ResponseFacts& f) { return keepalive::decide(l, Settings{}, f); }

ConnectionLimits event_limits(std::int64_t timeout_us = 5000000, int max = 100) {
    ConnectionLimits l = limits(timeout_us, max);
    l.per_response_idle_timeout = false;
    return l;
}

std::string header(const Decision& d) { return std::string(d.keep_alive_header()); }

}  // namespace

TEST(Policy, Http11IsKeptAndAdvertisedWithoutOptIn) {
    const Decision d = decide(limits(), http11());
    EXPECT_EQ(d.verdict, Verdict::Keep);
    EXPECT_EQ(d.reason, CloseReason::None);
    EXPECT_FALSE(d.client_opted_in);
    EXPECT_EQ(header(d), "timeout=5, max=100");
    EXPECT_EQ(d.connection_header(), "Keep-Alive");
}

TEST(Policy, MaxCountsDownByOnePerKeptResponse) {
    ResponseFacts f = http11();
    for (int before = 0; before < 100; ++before) {
        f.responses_kept_before = before;
        const Decision d = decide(limits(5000000, 100), f);
        ASSERT_TRUE(d.keep()) << before;
        EXPECT_EQ(d.max_remaining, 100 - before);
        EXPECT_EQ(header(d), "timeout=5, max=" + std::to_string(100 - before));
    }
}

TEST(Policy, BudgetUsedUpCloses) {
    ResponseFacts f = http11();
    f.responses_kept_before = 3;
    const Decision d = decide(limits(5000000, 3), f);
    EXPECT_EQ(d.verdict, Verdict::Close);
    EXPECT_EQ(d.reason, CloseReason::BudgetReached);
    EXPECT_EQ(header(d), "");
    EXPECT_EQ(d.connection_header(), "close");
}

TEST(Policy, NegativeBudgetClosesEveryResponseAsCoreDoes) {
    // httpd accepts MaxKeepAliveRequests -1; only 0 means unlimited.
    const Decision d = decide(limits(5000000, -1), http11());
    EXPECT_EQ(d.reason, CloseReason::BudgetReached);
    EXPECT_EQ(header(d), "");
}

TEST(Policy, UnlimitedBudgetAdvertisesTimeoutAlone) {
    ResponseFacts f = http11();
    f.responses_kept_before = 100000;
    const Decision d = decide(limits(5000000, 0), f);
    EXPECT_TRUE(d.keep());
    EXPECT_EQ(d.max_remaining, -1);
    EXPECT_EQ(header(d), "timeout=5");
}

TEST(Policy, TimeoutIsRoundedDownNeverUp) {
    EXPECT_EQ(header(decide(limits(2999999, 10), http11())), "timeout=2, max=10");
    EXPECT_EQ(header(decide(limits(1500000, 10), http11())), "timeout=1, max=10");
    EXPECT_EQ(header(decide(limits(500000, 10), http11())), "timeout=0, max=10");
    const Decision d = decide(limits(2999999, 10), http11());
    EXPECT_EQ(d.idle_timeout_us, 2999999);
}

TEST(Policy, LargeValuesFitTheHeader) {
    ResponseFacts f = http11();
    const Decision d = decide(limits(std::int64_t{2147483647} * 1000000, 2147483647), f);
    EXPECT_EQ(header(d), "timeout=2147483647, max=2147483647");
}

TEST(Policy, Http10WithoutOptInCloses) {
    const Decision d = decide(limits(), http10());
    EXPECT_EQ(d.reason, CloseReason::Http10NoOptIn);
    EXPECT_EQ(header(d), "");
}

TEST(Policy, Http10WithOptInIsKept) {
    const Decision d = decide(limits(), http10("Keep-Alive"));
    EXPECT_TRUE(d.keep());
    EXPECT_TRUE(d.client_opted_in);
    EXPECT_EQ(header(d), "timeout=5, max=100");
}

TEST(Policy, Http10PrefixOfKeepAliveIsNotAnOptIn) {
    // Core would accept "keep" (its token match is a prefix match); the RFC does not.
    EXPECT_EQ(decide(limits(), http10("keep")).reason, CloseReason::Http10NoOptIn);
}

TEST(Policy, CloseTokenWinsAnywhereAndInAnyCase) {
    for (const char* field : {"close", "CLOSE", "keep-alive, close", "close, keep-alive", "TE,  Close "}) {
        ResponseFacts f = http11();
        f.request_connection = field;
        EXPECT_EQ(decide(limits(), f).reason, CloseReason::ClientClose) << field;
        ResponseFacts g = http10(field);
        EXPECT_EQ(decide(limits(), g).reason, CloseReason::ClientClose) << field;
    }
}

TEST(Policy, CloseThatOnlyCoreSeesStillCloses) {
    ResponseFacts f = http11();
    f.request_connection = "foo clo";
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::ClientClose);
}

TEST(Policy, KeepAliveOffOrZeroTimeoutCloses) {
    EXPECT_EQ(decide(limits(5000000, 100, false), http11()).reason, CloseReason::Disabled);
    EXPECT_EQ(decide(limits(0, 100), http11()).reason, CloseReason::Disabled);
}

TEST(Policy, StatusesThatDropTheConnectionClose) {
    for (int status : {400, 408, 411, 413, 414, 500, 501, 503}) {
        ResponseFacts f = http11();
        f.status = status;
        EXPECT_EQ(decide(limits(), f).reason, CloseReason::ErrorStatus) << status;
    }
    for (int status : {200, 201, 204, 301, 302, 304, 401, 403, 404, 405, 409, 410, 412, 415, 416, 429, 502, 504}) {
        ResponseFacts f = http11();
        f.status = status;
        EXPECT_TRUE(decide(limits(), f).keep()) << status;
    }
}

TEST(Policy, PendingExpectContinueCloses) {
    ResponseFacts f = http11();
    f.expecting_100 = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::ExpectContinue);
}

TEST(Policy, UndelimitedBodyClosesHttp10ButHttp11IsChunked) {
    ResponseFacts f10 = http10("keep-alive");
    f10.framing = BodyFraming::Undelimited;
    EXPECT_EQ(decide(limits(), f10).reason, CloseReason::UndelimitedBody);

    ResponseFacts f11 = http11();
    f11.framing = BodyFraming::Undelimited;
    EXPECT_TRUE(decide(limits(), f11).keep());
}

TEST(Policy, UnknownFramingDoesNotCloseYet) {
    ResponseFacts f = http10("keep-alive");
    f.framing = BodyFraming::Unknown;
    EXPECT_TRUE(decide(limits(), f).keep());
}

TEST(Policy, ResponseAskingForCloseCloses) {
    ResponseFacts f = http11();
    f.response_connection = "close";
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::ResponseClose);
    f.response_connection = "Upgrade";
    EXPECT_TRUE(decide(limits(), f).keep());
}

TEST(Policy, NokeepaliveEnvClosesUnlessProxied) {
    ResponseFacts f = http11();
    f.nokeepalive_env = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::DisabledByEnv);
    f.via_present = true;
    EXPECT_TRUE(decide(limits(), f).keep());
}

TEST(Policy, ForcedHttp10ResponseCloses) {
    ResponseFacts f = http10("keep-alive");
    f.forced_http10 = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::ForcedHttp10);
}

TEST(Policy, DoomedConnectionCloses) {
    ResponseFacts f = http11();
    f.connection_marked_close = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::MarkedClose);
}

TEST(Policy, ErrorResponseOnADoomedConnectionIsAnErrorStatus) {
    // Core marks the connection closed before it sends a 400 or a 500.
    ResponseFacts f = http11();
    f.connection_marked_close = true;
    f.status = 400;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::ErrorStatus);
    f.status = 200;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::MarkedClose);
}

TEST(Policy, StoppingServerCloses) {
    ResponseFacts f = http11();
    f.server_stopping = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::ServerStopping);
}

TEST(Policy, Http2AndHttp09GetNoDecisionAndNoHeaders) {
    ResponseFacts h2 = http11();
    h2.http_major = 2;
    h2.http_minor = 0;
    h2.multiplexed = true;
    const Decision d2 = decide(limits(), h2);
    EXPECT_EQ(d2.verdict, Verdict::NotApplicable);
    EXPECT_EQ(header(d2), "");
    EXPECT_EQ(d2.connection_header(), "");

    ResponseFacts h09 = http10();
    h09.headerless = true;
    EXPECT_EQ(decide(limits(), h09).verdict, Verdict::NotApplicable);
}

TEST(Policy, HeadAnd204And304AreKept) {
    ResponseFacts head = http10("keep-alive");
    head.head_request = true;
    EXPECT_TRUE(decide(limits(), head).keep());
    for (int status : {204, 304}) {
        ResponseFacts f = http11();
        f.status = status;
        EXPECT_TRUE(decide(limits(), f).keep()) << status;
    }
}

TEST(Policy, ClosingDecisionsNeverCarryAKeepAliveHeader) {
    ResponseFacts cases[6] = {http10(), http11(), http11(), http11(), http11(), http11()};
    cases[1].request_connection = "close";
    cases[2].status = 500;
    cases[3].responses_kept_before = 100;
    cases[4].server_stopping = true;
    cases[5].response_connection = "close";
    for (const ResponseFacts& f : cases) {
        const Decision d = decide(limits(), f);
        EXPECT_EQ(d.verdict, Verdict::Close);
        EXPECT_EQ(header(d), "");
        EXPECT_EQ(d.max_remaining, -1);
    }
}

TEST(Policy, ReasonNamesAreStableLogTokens) {
    EXPECT_STREQ(keepalive::reason_name(CloseReason::ClientClose), "client-close");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::Http10NoOptIn), "http10-no-optin");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::BudgetReached), "budget-reached");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::ErrorStatus), "error-status");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::UndelimitedBody), "undelimited-body");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::ServerStopping), "server-stopping");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::LifetimeReached), "lifetime-reached");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::Http10Proxy), "http10-proxy");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::DisabledByCondition), "disabled-by-condition");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::IdleTimeout), "idle-timeout");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::EarlyCloseBusy), "early-close-busy");
    EXPECT_STREQ(keepalive::reason_name(CloseReason::EarlyCloseStopping), "early-close-stopping");
}

TEST(EarlyClose, EveryReasonHasItsOwnName) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < keepalive::kCloseReasonCount; ++i) {
        const std::string name = keepalive::reason_name(static_cast<CloseReason>(i));
        EXPECT_NE(name, "unknown") << i;
        EXPECT_TRUE(names.insert(name).second) << name;
    }
}

TEST(EarlyClose, BeforeTheAdvertisedTimeoutLessTheToleranceIsEarly) {
    // Event's listener closing a connection that was told timeout=5 after 3 s.
    EXPECT_TRUE(keepalive::closed_early(3000000, 5));
    // A graceful restart right after the response.
    EXPECT_TRUE(keepalive::closed_early(0, 5));
    EXPECT_TRUE(keepalive::closed_early(5000000 - keepalive::defaults::kEarlyCloseToleranceUs - 1, 5));
}

TEST(EarlyClose, AtOrAfterTheTimeoutOrWithinTheToleranceIsNot) {
    EXPECT_FALSE(keepalive::closed_early(5000000, 5));
    EXPECT_FALSE(keepalive::closed_early(5003000, 5));  // the normal idle timeout, a little late
    EXPECT_FALSE(keepalive::closed_early(5000000 - keepalive::defaults::kEarlyCloseToleranceUs, 5));
    EXPECT_FALSE(keepalive::closed_early(60000000, 5));
    // timeout=0 (a sub-second timeout, rounded down) promises nothing.
    EXPECT_FALSE(keepalive::closed_early(0, 0));
}

TEST(EarlyClose, StoppingDecidesTheReason) {
    EXPECT_EQ(keepalive::early_close_reason(false), CloseReason::EarlyCloseBusy);
    EXPECT_EQ(keepalive::early_close_reason(true), CloseReason::EarlyCloseStopping);
}

std::string note(const Decision& d, bool kept) {
    char buffer[keepalive::kOutcomeNoteSize];
    const std::size_t length = keepalive::format_outcome_note(d, kept, buffer);
    EXPECT_EQ(length, std::strlen(buffer));
    return std::string(buffer, length);
}

TEST(Policy, OutcomeNoteSaysWhatTheAccessLogShows) {
    ResponseFacts f = http11();
    f.responses_kept_before = 1;
    EXPECT_EQ(note(decide(limits(), f), true), "keep timeout=5 max=99");
    EXPECT_EQ(note(decide(limits(5000000, 0), f), true), "keep timeout=5");
    f.responses_kept_before = 100;
    EXPECT_EQ(note(decide(limits(), f), false), "close budget-reached");
    EXPECT_EQ(note(decide(limits(), http10()), false), "close http10-no-optin");
}

TEST(Policy, OutcomeNoteFitsItsBufferWhateverTheValues) {
    Decision d;
    d.verdict = Verdict::Keep;
    d.advertised_timeout_s = 2147483647;
    d.max_remaining = 2147483647;
    EXPECT_EQ(note(d, true), "keep timeout=2147483647 max=2147483647");
    d.verdict = Verdict::Close;
    d.reason = CloseReason::DisabledByCondition;
    EXPECT_EQ(note(d, false), "close disabled-by-condition");
}

std::string fields(const Decision& d) {
    char buffer[keepalive::kKeepAliveFieldsSize];
    return std::string(buffer, keepalive::format_keep_alive_fields(d, buffer));
}

TEST(Policy, KeepAliveFieldsAreTheTwoLinesCoreWrites) {
    ResponseFacts f = http11();
    f.responses_kept_before = 1;
    EXPECT_EQ(fields(decide(limits(), f)), "Keep-Alive: timeout=5, max=99\r\nConnection: Keep-Alive\r\n");
    EXPECT_EQ(fields(decide(limits(5000000, 0), f)), "Keep-Alive: timeout=5\r\nConnection: Keep-Alive\r\n");
    f.responses_kept_before = 90;  // one digit, then two, then three
    EXPECT_EQ(fields(decide(limits(), f)), "Keep-Alive: timeout=5, max=10\r\nConnection: Keep-Alive\r\n");
    f.responses_kept_before = 91;
    EXPECT_EQ(fields(decide(limits(), f)), "Keep-Alive: timeout=5, max=9\r\nConnection: Keep-Alive\r\n");
    EXPECT_EQ(fields(decide(limits(120000000, 1000), f)),
              "Keep-Alive: timeout=120, max=909\r\nConnection: Keep-Alive\r\n");
    f.responses_kept_before = 100;
    EXPECT_EQ(fields(decide(limits(), f)), "");  // closes: nothing to write
}

TEST(Policy, KeepAliveFieldsFitTheirBufferWhateverTheValues) {
    Decision d;
    d.verdict = Verdict::Keep;
    d.advertised_timeout_s = 2147483647;
    d.max_remaining = 2147483647;
    EXPECT_EQ(fields(d), "Keep-Alive: timeout=2147483647, max=2147483647\r\nConnection: Keep-Alive\r\n");
}

// ---- mod_keepalive's own directives ---------------------------------------

TEST(Settings, HeaderModeAlwaysSendsOnEveryKeptResponse) {
    Settings s;
    s.header_mode = HeaderMode::Always;
    EXPECT_TRUE(decide(limits(), s, http11()).send_header);
    EXPECT_TRUE(decide(limits(), s, http10("keep-alive")).send_header);
}

TEST(Settings, HeaderModeOnRequestSendsOnlyToClientsThatAsked) {
    Settings s;
    s.header_mode = HeaderMode::OnRequest;
    EXPECT_FALSE(decide(limits(), s, http11()).send_header);
    ResponseFacts asked = http11();
    asked.request_connection = "keep-alive";
    EXPECT_TRUE(decide(limits(), s, asked).send_header);
    EXPECT_TRUE(decide(limits(), s, http10("keep-alive")).send_header);
}

TEST(Settings, HeaderModeNeverSendsNoHeaderButStillKeeps) {
    Settings s;
    s.header_mode = HeaderMode::Never;
    for (const ResponseFacts& f : {http11(), http10("keep-alive")}) {
        const Decision d = decide(limits(), s, f);
        EXPECT_TRUE(d.keep());
        EXPECT_FALSE(d.send_header);
        EXPECT_EQ(d.connection_header(), "Keep-Alive");
    }
}

TEST(Settings, IdleTimeoutOverridesTheVirtualHostsUnderSyncMpms) {
    Settings s;
    s.idle_timeout_us = 1500000;
    const Decision shorter = decide(limits(5000000), s, http11());
    EXPECT_EQ(shorter.idle_timeout_us, 1500000);
    EXPECT_EQ(header(shorter), "timeout=1, max=100");
    s.idle_timeout_us = 20000000;
    const Decision longer = decide(limits(5000000), s, http11());
    EXPECT_EQ(longer.idle_timeout_us, 20000000);
    EXPECT_EQ(header(longer), "timeout=20, max=100");
}

TEST(Settings, UnderEventAdvertisedNeverExceedsTheVirtualHostsQueue) {
    Settings s;
    s.idle_timeout_us = 20000000;
    const Decision longer = decide(event_limits(5000000), s, http11());
    EXPECT_EQ(longer.idle_timeout_us, 5000000);  // what the event queue waits
    EXPECT_EQ(header(longer), "timeout=5, max=100");
    s.idle_timeout_us = 2000000;
    const Decision shorter = decide(event_limits(5000000), s, http11());
    EXPECT_EQ(shorter.idle_timeout_us, 5000000);  // still held 5 s: at least 2
    EXPECT_EQ(header(shorter), "timeout=2, max=100");
}

TEST(Settings, AdvertisedTimeoutIsSeparateAndNeverAboveEnforced) {
    Settings s;
    s.advertised_timeout_us = 3000000;
    const Decision d = decide(limits(10000000), s, http11());
    EXPECT_EQ(d.idle_timeout_us, 10000000);
    EXPECT_EQ(header(d), "timeout=3, max=100");
    s.advertised_timeout_us = 60000000;  // above: clamped, never a lie
    EXPECT_EQ(header(decide(limits(10000000), s, http11())), "timeout=10, max=100");
}

TEST(Settings, ZeroIdleTimeoutDisablesKeepAlive) {
    Settings s;
    s.idle_timeout_us = 0;
    EXPECT_EQ(decide(limits(), s, http11()).reason, CloseReason::Disabled);
}

TEST(Settings, EventWithZeroVirtualHostTimeoutCannotKeep) {
    Settings s;
    s.idle_timeout_us = 5000000;
    EXPECT_EQ(decide(event_limits(0), s, http11()).reason, CloseReason::Disabled);
}

TEST(Settings, MaxRequestsOverridesCoresBudget) {
    Settings s;
    s.max_requests = 2;
    ResponseFacts f = http11();
    EXPECT_EQ(header(decide(limits(5000000, 100), s, f)), "timeout=5, max=2");
    f.responses_kept_before = 2;
    EXPECT_EQ(decide(limits(5000000, 100), s, f).reason, CloseReason::BudgetReached);
    s.max_requests = 0;
    f.responses_kept_before = 5000;
    EXPECT_EQ(header(decide(limits(5000000, 100), s, f)), "timeout=5");
}

TEST(Settings, LifetimeReachedClosesTheNextResponse) {
    Settings s;
    s.max_lifetime_us = 60000000;
    s.max_lifetime_jitter_permille = 0;
    ResponseFacts f = http11();
    f.connection_age_us = 59999999;
    EXPECT_TRUE(decide(limits(), s, f).keep());
    f.connection_age_us = 60000000;
    EXPECT_EQ(decide(limits(), s, f).reason, CloseReason::LifetimeReached);
    s.max_lifetime_us = 0;  // unlimited
    f.connection_age_us = std::int64_t{1} << 50;
    EXPECT_TRUE(decide(limits(), s, f).keep());
}

TEST(Settings, LifetimeJitterIsTenPercentByDefault) {
    EXPECT_EQ(Settings{}.max_lifetime_jitter_permille, 100);
}

TEST(Settings, JitteredLifetimesStayWithinTheShareBelowTheMaximum) {
    const std::int64_t lifetime = 60000000;
    std::int64_t shortest = lifetime, longest = 0;
    for (std::uint64_t key = 0; key < 20000; ++key) {
        // Keys like the adapter's: accept times a few microseconds apart.
        const std::int64_t each = keepalive::lifetime_for(lifetime, 100, 1700000000000000ULL + key * 3);
        ASSERT_LE(each, lifetime) << key;
        ASSERT_GE(each, lifetime - lifetime / 10) << key;
        shortest = std::min(shortest, each);
        longest = std::max(longest, each);
        // The same connection gets the same lifetime on every response.
        ASSERT_EQ(each, keepalive::lifetime_for(lifetime, 100, 1700000000000000ULL + key * 3));
    }
    // Spread over the whole share, not bunched.
    EXPECT_LT(shortest, lifetime - lifetime / 10 + lifetime / 100);
    EXPECT_GT(longest, lifetime - lifetime / 100);
}

TEST(Settings, JitterIsSpreadEvenly) {
    int in_lower_half = 0;
    for (std::uint64_t key = 0; key < 10000; ++key) {
        in_lower_half += keepalive::lifetime_for(1000000, 100, key) < 950000 ? 1 : 0;
    }
    EXPECT_NEAR(in_lower_half, 5000, 300);
}

TEST(Settings, ZeroJitterOrNoLifetimeChangesNothing) {
    EXPECT_EQ(keepalive::lifetime_for(60000000, 0, 12345), 60000000);
    EXPECT_EQ(keepalive::lifetime_for(0, 100, 12345), 0);
    EXPECT_EQ(keepalive::lifetime_for(60000000, 1000, 0), 60000000);  // key 0: fraction 0
}

TEST(Settings, JitterDecidesWhichConnectionsCloseFirst) {
    Settings s;
    s.max_lifetime_us = 10000000;
    s.max_lifetime_jitter_permille = 500;
    ResponseFacts f = http11();
    f.connection_age_us = 7500000;  // between half the lifetime and all of it
    int closed = 0;
    for (std::uint64_t key = 1; key <= 1000; ++key) {
        f.connection_key = key;
        const Decision d = decide(limits(), s, f);
        closed += d.keep() ? 0 : 1;
        EXPECT_EQ(d.keep(), f.connection_age_us < keepalive::lifetime_for(10000000, 500, key)) << key;
    }
    EXPECT_NEAR(closed, 500, 80);
    f.connection_age_us = 4999999;  // younger than any: all kept
    for (std::uint64_t key = 1; key <= 100; ++key) {
        f.connection_key = key;
        EXPECT_TRUE(decide(limits(), s, f).keep()) << key;
    }
    f.connection_age_us = 10000000;  // the maximum: all closed
    for (std::uint64_t key = 1; key <= 100; ++key) {
        f.connection_key = key;
        EXPECT_EQ(decide(limits(), s, f).reason, CloseReason::LifetimeReached) << key;
    }
}

TEST(Settings, Http10CanBeRefusedPerServer) {
    Settings s;
    s.http10 = false;
    EXPECT_EQ(decide(limits(), s, http10("keep-alive")).reason, CloseReason::Http10Refused);
    EXPECT_TRUE(decide(limits(), s, http11()).keep());
}

TEST(Settings, ForwardProxyNeverKeepsHttp10Clients) {
    ResponseFacts f = http10("keep-alive");
    f.forward_proxy = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::Http10Proxy);
    ResponseFacts g = http11();
    g.forward_proxy = true;
    EXPECT_TRUE(decide(limits(), g).keep());
}

TEST(Settings, ConditionDisablesKeepAlive) {
    ResponseFacts f = http11();
    f.disabled_by_condition = true;
    EXPECT_EQ(decide(limits(), f).reason, CloseReason::DisabledByCondition);
}

TEST(Settings, NoDirectiveSetMeansCoresBehaviourExactly) {
    // Every combination of core's inputs: the module only adds the header.
    for (bool on : {true, false})
        for (int max : {0, 1, 3, 100})
            for (int before : {0, 1, 2, 3, 99, 100})
                for (int status : {200, 304, 400, 500}) {
                    ResponseFacts f = http11();
                    f.responses_kept_before = before;
                    f.status = status;
                    const ConnectionLimits l = limits(5000000, max, on);
                    const bool core_keeps = on && (max == 0 || max - before > 0) && status != 400 && status != 500;
                    const Decision d = decide(l, Settings{}, f);
                    EXPECT_EQ(d.keep(), core_keeps) << on << max << before << status;
                    if (d.keep()) {
                        EXPECT_EQ(d.idle_timeout_us, 5000000);
                        EXPECT_TRUE(d.send_header);
                    }
                }
}

// ---- the load-adaptive mode -------------------------------------------------

namespace {

Settings adaptive(int shrink_at = 500, int close_at = 900, std::int64_t floor_us = 1000000) {
    Settings s;
    s.adaptive.enabled = true;
    s.adaptive.shrink_at_permille = shrink_at;
    s.adaptive.close_at_permille = close_at;
    s.adaptive.floor_us = floor_us;
    return s;
}

ResponseFacts at_occupancy(int permille) {
    ResponseFacts f = http11();
    f.pressure_permille = permille;
    f.shedding_pressure_permille = permille;  // the accept queue unknown: occupancy sheds
    return f;
}

}  // namespace

TEST(Adaptive, BelowTheFirstThresholdNothingChanges) {
    for (int occupancy : {0, 250, 500}) {
        const Decision d = decide(limits(5000000), adaptive(), at_occupancy(occupancy));
        EXPECT_TRUE(d.keep());
        EXPECT_EQ(d.idle_timeout_us, 5000000) << occupancy;
    }
}

TEST(Adaptive, IdleTimeoutShrinksLinearlyTowardTheFloor) {
    // 5 s at 50%, 1 s at 90%: halfway (70%) is 3 s.
    EXPECT_EQ(decide(limits(5000000), adaptive(), at_occupancy(700)).idle_timeout_us, 3000000);
    EXPECT_EQ(decide(limits(5000000), adaptive(), at_occupancy(600)).idle_timeout_us, 4000000);
    EXPECT_EQ(decide(limits(5000000), adaptive(), at_occupancy(899)).idle_timeout_us, 1010000);
    const Decision d = decide(limits(5000000), adaptive(), at_occupancy(700));
    EXPECT_EQ(header(d), "timeout=3, max=100");
}

TEST(Adaptive, AtOrAboveTheSecondThresholdResponsesClose) {
    for (int occupancy : {900, 950, 1000}) {
        const Decision d = decide(limits(), adaptive(), at_occupancy(occupancy));
        EXPECT_EQ(d.reason, CloseReason::LoadShedding) << occupancy;
        EXPECT_EQ(header(d), "");
    }
    EXPECT_STREQ(keepalive::reason_name(CloseReason::LoadShedding), "load-shedding");
}

TEST(Adaptive, RecoversAsSoonAsOccupancyFalls) {
    EXPECT_FALSE(decide(limits(), adaptive(), at_occupancy(950)).keep());
    const Decision d = decide(limits(), adaptive(), at_occupancy(100));
    EXPECT_TRUE(d.keep());
    EXPECT_EQ(d.idle_timeout_us, 5000000);
}

TEST(Adaptive, NeverLengthensATimeoutShorterThanTheFloor) {
    EXPECT_EQ(decide(limits(500000), adaptive(), at_occupancy(800)).idle_timeout_us, 500000);
}

TEST(Adaptive, UnknownOccupancyOrModeOffChangesNothing) {
    EXPECT_EQ(decide(limits(), adaptive(), at_occupancy(-1)).idle_timeout_us, 5000000);
    Settings off = adaptive();
    off.adaptive.enabled = false;
    EXPECT_TRUE(decide(limits(), off, at_occupancy(1000)).keep());
    EXPECT_EQ(decide(limits(), off, at_occupancy(1000)).idle_timeout_us, 5000000);
}

TEST(Adaptive, AdvertisedNeverExceedsWhatIsEnforced) {
    for (int occupancy = 0; occupancy < 900; occupancy += 37) {
        for (bool per_response : {true, false}) {
            ConnectionLimits l = limits(5000000);
            l.per_response_idle_timeout = per_response;
            const Decision d = decide(l, adaptive(), at_occupancy(occupancy));
            ASSERT_TRUE(d.keep());
            EXPECT_LE(d.advertised_timeout_us, d.idle_timeout_us) << occupancy;
            EXPECT_LE(static_cast<std::int64_t>(d.advertised_timeout_s) * 1000000, d.idle_timeout_us);
        }
    }
}

