"""HTTP/1.0 clients are persistent only when they ask for it."""

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive)
from tests.harness.configs import STREAM_CONFIG, STREAM_FILES
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"),
        extra_modules=["lua"], files=STREAM_FILES, extra_config=STREAM_CONFIG,
        name="http10"))


# Only KeepAliveHTTP10 of the module's directives: core would decide HTTP/1.1
# requests alone, but downgrade-1.0 and force-no-vary make core answer them
# as HTTP/1.0, where the directive applies.
HTTP10_OFF_CONFIG = """\
KeepAliveHTTP10 Off
SetEnvIf Request_URI "^/down/" downgrade-1.0
SetEnvIf Request_URI "^/novary/" force-no-vary
"""


@pytest.fixture(scope="module")
def http10_off_server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"),
        extra_config=HTTP10_OFF_CONFIG, extra_modules=["setenvif"],
        files={"htdocs/down/index.html": b"hello\n",
               "htdocs/novary/index.html": b"hello\n"},
        name="http10off"))


def http10(path="/", connection=None, method="GET"):
    headers = [("Connection", connection)] if connection is not None else []
    return build_request(method=method, path=path, version="HTTP/1.0",
                         headers=headers)


@pytest.mark.parametrize("req", [
    http10(),
    b"GET /small.txt HTTP/1.0\r\n\r\n",
], ids=["with-host", "without-host"])
def test_http10_without_keepalive_gets_close_and_socket_closes(server, req):
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp, within=1.0)


@pytest.mark.parametrize("token", ["keep-alive", "Keep-Alive", "KEEP-ALIVE",
                                   "foo, keep-alive"])
def test_http10_keepalive_request_stays_open_and_max_counts_down(server,
                                                                  token):
    req = http10(connection=token)
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (100, 99, 98):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)
        assert not c.is_closed(0.3), (
            "server closed an HTTP/1.0 keep-alive connection right away\n"
            + resp.describe(req))


def test_http10_head_keepalive_request_advertises_keepalive(server):
    req = http10(method="HEAD", connection="keep-alive")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)


def test_http10_lookalike_token_is_not_an_opt_in(server):
    req = http10(connection="x-keep-alive")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_plain_http10_request_after_keepalive_ones_closes(server):
    with RawConnection("127.0.0.1", server.port) as c:
        req = http10(connection="keep-alive")
        resp = c.request(req)
        assert_keepalive(resp, 5, 100, req)
        req = http10()
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_http10_keepalive_request_for_response_of_unknown_length_closes(
        server):
    # No Content-Length and HTTP/1.0 cannot chunk: the body ends at EOF, so
    # the connection cannot stay open whatever the client asked for.
    req = http10(path="/stream", connection="keep-alive")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert not resp.has("Content-Length"), (
            "test precondition: /stream must have no Content-Length\n"
            + resp.describe(req))
        assert resp.body == b"part one\npart two\n", resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert c.eof, "body was read to EOF, the server must have closed"


def test_http10_keepalive_and_close_tokens_together_close(server):
    req = http10(connection="keep-alive, close")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


@pytest.mark.parametrize("path", ["/down/", "/novary/"])
def test_http10_off_closes_http11_request_answered_as_http10(
        http10_off_server, path):
    # The client opted in, but the response is HTTP/1.0.
    req = build_request(path=path, headers=[("Connection", "keep-alive")])
    with RawConnection("127.0.0.1", http10_off_server.port) as c:
        resp = c.request(req)
        assert resp.status == 200 and resp.body == b"hello\n", (
            resp.describe(req))
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp, within=1.0)


def test_http10_off_keeps_http11_request(http10_off_server):
    req = build_request(path="/", headers=[("Connection", "keep-alive")])
    with RawConnection("127.0.0.1", http10_off_server.port) as c:
        for left in (100, 99):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)
