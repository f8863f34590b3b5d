// Directive arguments: what configtest accepts, and what its errors name.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/directive_args.h"

using keepalive::HeaderMode;

TEST(DirectiveArguments, Timeouts) {
    EXPECT_FALSE(keepalive::check_timeout(0));
    EXPECT_FALSE(keepalive::check_timeout(1500000));
    EXPECT_TRUE(keepalive::check_timeout(-1));
    EXPECT_TRUE(keepalive::check_timeout(std::int64_t{1} << 62));
    EXPECT_FALSE(keepalive::check_lifetime(3600000000));
    EXPECT_TRUE(keepalive::check_lifetime(-5));
}

TEST(DirectiveArguments, AdvertisedAboveIdleIsRefusedWithBothValues) {
    EXPECT_FALSE(keepalive::check_advertised_timeout(3000000, 5000000));
    EXPECT_FALSE(keepalive::check_advertised_timeout(5000000, 5000000));
    const auto error = keepalive::check_advertised_timeout(6000000, 5000000);
    ASSERT_TRUE(error);
    EXPECT_NE(error->find("6000ms"), std::string::npos) << *error;
    EXPECT_NE(error->find("5000ms"), std::string::npos) << *error;
}

TEST(DirectiveArguments, RequestCounts) {
    EXPECT_EQ(keepalive::parse_request_count("0"), 0);
    EXPECT_EQ(keepalive::parse_request_count("100"), 100);
    EXPECT_EQ(keepalive::parse_request_count("2147483647"), 2147483647);
    for (const char* bad : {"", "-1", "+1", "1.5", "ten", "2147483648", "99999999999", " 1", "1 ", "0x10"}) {
        EXPECT_FALSE(keepalive::parse_request_count(bad)) << bad;
    }
}

TEST(DirectiveArguments, HeaderModes) {
    EXPECT_EQ(keepalive::parse_header_mode("always"), HeaderMode::Always);
    EXPECT_EQ(keepalive::parse_header_mode("OnRequest"), HeaderMode::OnRequest);
    EXPECT_EQ(keepalive::parse_header_mode("NEVER"), HeaderMode::Never);
    EXPECT_FALSE(keepalive::parse_header_mode("on"));
    EXPECT_FALSE(keepalive::parse_header_mode(""));
}

TEST(DirectiveArguments, Percentages) {
    EXPECT_EQ(keepalive::parse_percentage("50%"), 500);
    EXPECT_EQ(keepalive::parse_percentage("90"), 900);
    EXPECT_EQ(keepalive::parse_percentage("0%"), 0);
    EXPECT_EQ(keepalive::parse_percentage("100%"), 1000);
    for (const char* bad : {"", "%", "101%", "-5%", "50.5%", "half", "50%%"}) {
        EXPECT_FALSE(keepalive::parse_percentage(bad)) << bad;
    }
    EXPECT_FALSE(keepalive::check_adaptive_thresholds(500, 900));
    EXPECT_TRUE(keepalive::check_adaptive_thresholds(900, 500));
    EXPECT_TRUE(keepalive::check_adaptive_thresholds(700, 700));
}
