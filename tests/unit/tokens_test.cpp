#include <gtest/gtest.h>

#include "core/connection_tokens.h"

using keepalive::httpd_find_token;
using keepalive::list_has_token;
using keepalive::list_without_token;

TEST(ListHasToken, FindsTokenAnywhereInTheList) {
    EXPECT_TRUE(list_has_token("close", "close"));
    EXPECT_TRUE(list_has_token("TE, close", "close"));
    EXPECT_TRUE(list_has_token("close, TE", "close"));
    EXPECT_TRUE(list_has_token("Upgrade,close,TE", "close"));
}

TEST(ListHasToken, IsCaseInsensitive) {
    EXPECT_TRUE(list_has_token("CLOSE", "close"));
    EXPECT_TRUE(list_has_token("Keep-Alive", "keep-alive"));
}

TEST(ListHasToken, IgnoresWhitespaceAndEmptyElements) {
    EXPECT_TRUE(list_has_token("  close\t", "close"));
    EXPECT_TRUE(list_has_token(", ,\t, close ,,", "close"));
    EXPECT_FALSE(list_has_token("", "close"));
    EXPECT_FALSE(list_has_token(" , ,", "close"));
}

TEST(ListHasToken, MatchesWholeElementsOnly) {
    EXPECT_FALSE(list_has_token("closed", "close"));
    EXPECT_FALSE(list_has_token("clo", "close"));
    EXPECT_FALSE(list_has_token("keep-alive-ish", "keep-alive"));
    EXPECT_FALSE(list_has_token("close x", "close"));
}

TEST(ListHasToken, QuotedCommasDoNotSplit) {
    EXPECT_FALSE(list_has_token("\"a, close\"", "close"));
    EXPECT_FALSE(list_has_token("\"a\\\", close\"", "close"));
    EXPECT_TRUE(list_has_token("\"a, b\", close", "close"));
}

TEST(ListWithoutToken, RemovesEveryMatchAndKeepsTheRest) {
    EXPECT_EQ(list_without_token("keep-alive", "keep-alive"), "");
    EXPECT_EQ(list_without_token("Upgrade, Keep-Alive", "keep-alive"), "Upgrade");
    EXPECT_EQ(list_without_token("keep-alive, close, KEEP-ALIVE", "keep-alive"), "close");
    EXPECT_EQ(list_without_token(" TE ,  Upgrade ", "keep-alive"), "TE, Upgrade");
}

// httpd's ap_find_token splits on any separator and matches prefixes; the
// policy relies on reproducing that to predict core's verdict.
TEST(HttpdFindToken, ReproducesCoreMatching) {
    EXPECT_TRUE(httpd_find_token("close", "close"));
    EXPECT_TRUE(httpd_find_token("TE, CLOSE", "close"));
    EXPECT_TRUE(httpd_find_token("foo close", "close"));
    EXPECT_TRUE(httpd_find_token("x;close", "close"));
    EXPECT_TRUE(httpd_find_token("\"close\"", "close"));
    EXPECT_TRUE(httpd_find_token("clo", "close"));
    EXPECT_TRUE(httpd_find_token("k", "keep-alive"));
    EXPECT_FALSE(httpd_find_token("closed", "close"));
    EXPECT_FALSE(httpd_find_token("", "close"));
    EXPECT_FALSE(httpd_find_token(" ,;", "close"));
    EXPECT_FALSE(httpd_find_token("keep-alive", "close"));
}

TEST(ScanConnectionTokens, FindsBothTokensBothWaysInOnePass) {
    const auto t = keepalive::scan_connection_tokens("TE, Keep-Alive");
    EXPECT_TRUE(t.keep_alive);
    EXPECT_TRUE(t.httpd_keep_alive);
    EXPECT_FALSE(t.close);
    EXPECT_FALSE(t.httpd_close);
    const auto c = keepalive::scan_connection_tokens("close");
    EXPECT_TRUE(c.close && c.httpd_close && !c.keep_alive && !c.httpd_keep_alive);
}

TEST(ScanConnectionTokens, HttpdsPrefixQuirkIsReportedApart) {
    // "keep" is no keep-alive element, but core's matcher takes it for one.
    const auto t = keepalive::scan_connection_tokens("keep, clo");
    EXPECT_FALSE(t.keep_alive);
    EXPECT_TRUE(t.httpd_keep_alive);
    EXPECT_FALSE(t.close);
    EXPECT_TRUE(t.httpd_close);
    const auto none = keepalive::scan_connection_tokens("");
    EXPECT_FALSE(none.close || none.keep_alive || none.httpd_close || none.httpd_keep_alive);
}

