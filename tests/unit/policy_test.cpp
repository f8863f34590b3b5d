// Truth table of the keep-alive policy: one row per rule, each checked on its
// own against a response that would otherwise be kept.
#include <gtest/gtest.h>

#include <string>

#include "ka_policy.h"

using keepalive::BodyFraming;
using keepalive::CloseReason;
using keepalive::ConnectionLimits;
using keepalive::decide;
using keepalive::Decision;
using keepalive::ResponseFacts;
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
}
