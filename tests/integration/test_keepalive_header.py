"""Every persistent HTTP/1.1 response advertises "Keep-Alive: timeout=T, max=M"."""

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive)
from tests.harness.configs import (RATE_LIMITED_CONFIG, STREAM_CONFIG,
                                   STREAM_FILES)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"),
        extra_modules=["lua", "ratelimit", "env", "ext_filter"],
        files=dict(STREAM_FILES, **PADDED_FILES, **EXT_FILTER_FILES),
        executables=["scripts/slowcat.sh"],
        extra_config=STREAM_CONFIG + ERROR_DOCUMENTS + PADDED + EXT_FILTER,
        name="header"))


# /errdoc-missing answers 404 through an internal redirect to /small.txt
ERROR_DOCUMENTS = """\
<Location /errdoc-missing>
    ErrorDocument 404 /small.txt
</Location>
"""

# No directive of the module here: core decides, and the module writes the
# two fields into the header block core serialized. X-Pad sizes the block:
# small, near the 8000-byte buffer core writes it into (the fields fit in
# what is left, or not), and beyond it (more than one buffer).
PADDED = """\
<Location /pad>
    Header set X-Pad "expr=%{QUERY_STRING}"
</Location>
""" + RATE_LIMITED_CONFIG
# mod_ext_filter passes an empty brigade on while its command has no output
# yet; core writes the header block on it.
EXT_FILTER = """\
ExtFilterDefine slowcat mode=output cmd="@DIR@/scripts/slowcat.sh" preservescontentlength
LuaMapHandler "^/ext$" "@DIR@/scripts/ext.lua" handle
<Location /ext>
    SetOutputFilter slowcat
</Location>
"""
EXT_FILTER_FILES = {
    "scripts/slowcat.sh": b"#!/bin/sh\nsleep 0.3\nexec cat\n",
    "scripts/ext.lua": b"""
function handle(r)
  r.content_type = "text/plain"
  r.headers_out["Content-Length"] = "14"
  r:write("line1\\r\\n")
  r:flush()
  r:write("line2\\r\\n")
  return apache2.OK
end
""",
}

PADDED_FILES = {"htdocs/pad/index.html": b"hello\n",
                "htdocs/rate-limited/index.html": b"hello\n"}


@pytest.fixture(scope="module")
def budget3_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path, keepalive=("On", "5", "3"),
                                 name="budget3"))


@pytest.fixture(scope="module")
def unlimited_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path, keepalive=("On", "5", "0"),
                                 name="unlimited"))


@pytest.fixture(scope="module")
def subsecond_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "1500ms", "100"),
                                 name="subsecond"))


@pytest.mark.parametrize("headers", [[], KA],
                         ids=["without-keepalive-token", "with-keepalive-token"])
def test_http11_request_gets_keepalive_header(server, headers):
    req = build_request(headers=headers)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)
        resp = c.request(req)
        assert_keepalive(resp, 5, 99, req)


def test_max_counts_down_with_each_request_on_one_connection(server):
    with RawConnection("127.0.0.1", server.port) as c:
        for i in range(6):
            req = build_request(path="/small.txt",
                                headers=KA if i % 2 else [])
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, 100 - i, req)


def test_pipelined_requests_each_get_their_own_max(server):
    reqs = [build_request(path="/small.txt"), build_request(headers=KA),
            build_request(path="/empty.txt")]
    with RawConnection("127.0.0.1", server.port) as c:
        c.send(b"".join(reqs))
        for i, req in enumerate(reqs):
            resp = c.read_response()
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, 100 - i, req)


def test_head_response_advertises_keepalive(server):
    req = build_request(method="HEAD")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)


def test_not_found_response_advertises_keepalive(server):
    req = build_request(path="/no-such-file.html")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 404, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)
        resp = c.request(build_request())
        assert_keepalive(resp, 5, 99, req)


def test_not_modified_response_advertises_keepalive(server):
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request(path="/small.txt"))
        etag = first.get("ETag")
        assert etag, first.describe()
        req = build_request(path="/small.txt",
                            headers=[("If-None-Match", etag)])
        resp = c.request(req)
        assert resp.status == 304, resp.describe(req)
        assert_keepalive(resp, 5, 99, req)


def test_error_document_response_advertises_keepalive_once(server):
    req = build_request(path="/errdoc-missing")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 404, resp.describe(req)
        assert resp.body == b"hello\n", (
            "test precondition: ErrorDocument should serve /small.txt\n"
            + resp.describe(req))
        assert_keepalive(resp, 5, 100, req)
        resp = c.request(req)
        assert_keepalive(resp, 5, 99, req)


def test_partial_content_response_advertises_keepalive(server):
    req = build_request(path="/big.bin", headers=[("Range", "bytes=0-9")])
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 206 and len(resp.body) == 10, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)


def test_large_file_response_advertises_keepalive(server):
    req = build_request(path="/big.bin")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200 and len(resp.body) == 256 * 1024, (
            resp.describe(req))
        assert_keepalive(resp, 5, 100, req)


def test_request_with_body_and_expect_100_continue_advertises_keepalive(
        server):
    with RawConnection("127.0.0.1", server.port) as c:
        req = (b"POST /small.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        c.send(req)
        interim = c.read_response()
        assert interim.status == 100, interim.describe(req)
        c.send(b"hello")
        resp = c.read_response()
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)
        req = build_request(method="POST", path="/small.txt", body=b"hello")
        resp = c.request(req)
        assert_keepalive(resp, 5, 99, req)


def test_chunked_response_advertises_keepalive(server):
    req = build_request(path="/stream")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert resp.tokens("Transfer-Encoding") == ["chunked"], (
            "test precondition: /stream should be chunked\n"
            + resp.describe(req))
        assert resp.body == b"part one\npart two\n", resp.describe(req)
        assert_keepalive(resp, 5, 100, req)


def test_budget_of_three_counts_down_then_closes(budget3_server):
    req = build_request()
    with RawConnection("127.0.0.1", budget3_server.port) as c:
        for left in (3, 2, 1):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_unlimited_requests_advertise_timeout_only(unlimited_server):
    with RawConnection("127.0.0.1", unlimited_server.port) as c:
        for i in range(3):
            req = build_request(headers=KA if i == 1 else [])
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, None, req)


def test_subsecond_timeout_is_advertised_rounded_down(subsecond_server):
    # KeepAliveTimeout 1500ms: advertise 1 (never promise more than the
    # server really waits), not 2.
    req = build_request()
    with RawConnection("127.0.0.1", subsecond_server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 1, 100, req)


PAD_SIZES = [0, 1, 7500] + list(range(7640, 7800, 13)) + [7950, 7990]


@pytest.mark.parametrize("token", [False, True], ids=["plain", "token"])
def test_header_block_of_any_size_carries_the_fields_once(server, token):
    # The response's own fields and body come through whole, with one
    # Keep-Alive and one Connection field, max counting down.
    with RawConnection("127.0.0.1", server.port) as c:
        for i, pad in enumerate(PAD_SIZES):
            req = build_request(path="/pad/?" + "p" * pad,
                                headers=KA if token else [])
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert resp.get("X-Pad") == "p" * pad, resp.describe(req)
            assert resp.body == b"hello\n", resp.describe(req)
            assert_keepalive(resp, 5, 100 - i, req)
            assert len(resp.get_all("Connection")) == 1, resp.describe(req)


@pytest.mark.parametrize("pad", [0, 17, 150, 190])
def test_rate_limited_response_carries_the_fields(server, pad):
    # A filter between HTTP_HEADER and the connection cuts the header block
    # into pieces: the module then puts the fields in before core writes it.
    req = build_request(path="/rate-limited/?" + "p" * pad)
    with RawConnection("127.0.0.1", server.port) as c:
        for i in range(2):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert resp.get("X-Pad") == "p" * pad, resp.describe(req)
            assert resp.body == b"hello\n", resp.describe(req)
            assert_keepalive(resp, 5, 100 - i, req)


def test_header_block_written_on_an_empty_brigade_carries_the_fields(server):
    req = build_request(path="/ext")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert resp.body == b"line1\r\nline2\r\n", resp.describe(req)
        assert_keepalive(resp, 5, 100, req)
        resp = c.request(build_request())
        assert_keepalive(resp, 5, 99)
