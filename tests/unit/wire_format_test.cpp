// Rewriting a serialized header block: taking Keep-Alive back out of it.
#include <gtest/gtest.h>

#include <string>

#include "core/wire_format.h"

using keepalive::strip_keep_alive_fields;

TEST(StripKeepAliveFields, RemovesTheFieldAndTheConnectionElement) {
    const std::string block =
        "HTTP/1.1 200 OK\r\n"
        "Date: x\r\n"
        "Keep-Alive: timeout=5, max=99\r\n"
        "Connection: Keep-Alive, close\r\n"
        "Content-Length: 3\r\n"
        "\r\n";
    EXPECT_EQ(keepalive::strip_keep_alive_fields(block, true),
              "HTTP/1.1 200 OK\r\nDate: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\n");
    EXPECT_EQ(keepalive::strip_keep_alive_fields(block, false),
              "HTTP/1.1 200 OK\r\nDate: x\r\nConnection: Keep-Alive, close\r\nContent-Length: 3\r\n\r\n");
}

TEST(StripKeepAliveFields, DropsAConnectionFieldLeftEmpty) {
    EXPECT_EQ(keepalive::strip_keep_alive_fields("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n", true),
              "HTTP/1.0 200 OK\r\n\r\n");
}

TEST(StripKeepAliveFields, LeavesTheBodyLookalikesAndOtherFieldsAlone) {
    const std::string block =
        "HTTP/1.1 200 OK\n"
        "Keep-Alive-Extra: 1\n"
        "X-Keep-Alive: 1\n"
        "Connection: Upgrade\n"
        "\n"
        "Keep-Alive: timeout=1\r\nConnection: keep-alive\r\n";
    EXPECT_EQ(keepalive::strip_keep_alive_fields(block, true), block);
}

TEST(StripKeepAliveFields, LeavesAPartialBlockAlone) {
    // The first part of a header block that a filter split: without its
    // empty line, a field may continue in the next part.
    const std::string part = "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=2\r\nConnection: Keep-Al";
    EXPECT_EQ(keepalive::strip_keep_alive_fields(part, true), part);
    EXPECT_EQ(keepalive::strip_keep_alive_fields("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\n", false),
              "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\n");
}
