"""Rules that hold whatever the configuration: the client's "close" wins,
responses whose end the client can only see as EOF close, error statuses
that drop the connection close, unusual responses (HEAD, 204, 304,
internal redirects, ErrorDocument, SSI subrequests) are kept and counted
once, and nobody but the module can put Keep-Alive on a response (CGI
scripts, Lua handlers, mod_headers).

None of these needs a mod_keepalive directive: the server runs with core's
KeepAliveTimeout 5 and MaxKeepAliveRequests 100 only.
"""

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive, assert_still_open)
from tests.harness.configs import (FORGED_VALUE, STREAM_LUA,
                                   cgi_directory_config, cgi_module)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]

HANDLERS_LUA = b"""\
function no_content(r)
  r.status = 204
  return apache2.OK
end

-- A handler that forges the connection headers itself.
function forged(r)
  r.content_type = "text/plain"
  r.headers_out["Keep-Alive"] = "timeout=999, max=999"
  r.headers_out["Connection"] = "keep-alive"
  r.err_headers_out["Keep-Alive"] = "timeout=998, max=998"
  r:puts("hello\\n")
  return apache2.OK
end

function fail(r)
  error("deliberate failure")
end
"""

# No Content-Length, and the pause makes httpd send the first part before
# the script has finished, so it cannot compute one either.
STREAM_CGI = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo part one
sleep 0.3
echo part two
"""

FORGED_CGI = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n'
printf 'Keep-Alive: timeout=999, max=999\\r\\n'
printf 'Connection: keep-alive\\r\\n'
printf '\\r\\n'
printf 'hello\\n'
"""

BROKEN_CGI = b"""#!/bin/sh
echo this is not a header line
"""

SSI_PAGE = (b'<p>A<!--#include virtual="/small.txt" -->'
            b'B<!--#include virtual="/hdr/index.html" -->C</p>\n')

STATUSES = (400, 408, 411, 413, 414, 500, 501, 503)

CONFIG = cgi_directory_config() + """\
LuaMapHandler "^/stream$" "@DIR@/scripts/stream.lua" handle
LuaMapHandler "^/lua/204$" "@DIR@/scripts/handlers.lua" no_content
LuaMapHandler "^/lua/forged$" "@DIR@/scripts/handlers.lua" forged
LuaMapHandler "^/lua/fail$" "@DIR@/scripts/handlers.lua" fail

# every status that makes httpd drop the connection, set by a handler
%(status_redirects)s
# the same 503 answered with a local ErrorDocument (an internal redirect)
RedirectMatch 503 ^/maint-errdoc$
<Location /maint-errdoc>
    ErrorDocument 503 /small.txt
</Location>

<Location /errdoc>
    ErrorDocument 404 /small.txt
</Location>
<Location /errdoc-text>
    ErrorDocument 404 "no such thing here"
</Location>

# a 302 before anything reads the request body: httpd never sends
# "100 Continue" for it
Redirect /expect-redirect /small.txt

<Location /limited>
    LimitRequestBody 10
</Location>

# a request line or header arriving slower than this gets a real 408
RequestReadTimeout header=1 body=2

# mod_rewrite: per-directory rule (an internal redirect) and a [PT] rule
RewriteEngine On
RewriteRule ^/pt/ /small.txt [PT]
<Directory "@DOCROOT@/rw">
    RewriteEngine On
    RewriteRule ^ /small.txt [L]
</Directory>

<Files "*.shtml">
    Options +Includes
    SetOutputFilter INCLUDES
</Files>

<Location /hset>
    Header set Keep-Alive "%(forged)s"
    Header set Connection "keep-alive"
</Location>
<Location /halways>
    Header always set Keep-Alive "%(forged)s"
    Header always set Connection "keep-alive"
</Location>
<Location /hadd>
    Header add Keep-Alive "%(forged)s"
    Header merge Connection "keep-alive"
</Location>
RedirectMatch 503 ^/halways-503$
<Location /halways-503>
    Header always set Keep-Alive "%(forged)s"
    Header always set Connection "keep-alive"
</Location>
""" % {"status_redirects": "\n".join("RedirectMatch %d ^/status/%d$" % (s, s)
                                     for s in STATUSES),
       "forged": FORGED_VALUE}

FILES = {
    "scripts/stream.lua": STREAM_LUA,
    "scripts/handlers.lua": HANDLERS_LUA,
    "htdocs/cgi/stream.cgi": STREAM_CGI,
    "htdocs/cgi/forged.cgi": FORGED_CGI,
    "htdocs/cgi/broken.cgi": BROKEN_CGI,
    "htdocs/ssi.shtml": SSI_PAGE,
    "htdocs/rw/index.html": b"never served: rewritten\n",
    "htdocs/hset/index.html": b"hello\n",
    "htdocs/halways/index.html": b"hello\n",
    "htdocs/hadd/index.html": b"hello\n",
}
EXECUTABLES = [p for p in FILES if p.endswith(".cgi")]


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        extra_modules=["lua", cgi_module(mpm), "alias", "rewrite", "include",
                       "reqtimeout"],
        files=FILES, executables=EXECUTABLES, name="rules"))


def closes(port, req, status, pre=(), head_only=None):
    """``pre`` then ``req`` on one connection: the last response has
    ``status``, says close without Keep-Alive, and the socket closes."""
    with RawConnection("127.0.0.1", port) as c:
        for i, p in enumerate(pre):
            resp = c.request(p)
            assert_keepalive(resp, 5, 100 - i, p)
        resp = c.request(req, head_only=head_only)
        assert resp.status == status, (
            "expected status %d\n%s" % (status, resp.describe(req)))
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)
        return resp


def kept_sequence(port, reqs, start=100):
    """Send ``reqs`` one after the other on one connection; every response
    must be persistent with max counting down from ``start``."""
    out = []
    with RawConnection("127.0.0.1", port) as c:
        for i, (req, status) in enumerate(reqs):
            resp = c.request(req)
            assert resp.status == status, (
                "expected status %d\n%s" % (status, resp.describe(req)))
            assert_keepalive(resp, 5, start - i, req)
            out.append(resp)
        assert_still_open(c, reqs[-1][0], out[-1])
    return out


# -- rule 1: a "close" token anywhere in the request's Connection wins --------
CLOSE_REQUESTS = {
    "close-first-then-keep-alive":
        build_request(headers=[("Connection", "close, keep-alive")]),
    "mixed-case-with-odd-spacing":
        build_request(headers=["Connection:  keep-alive ,\tcLoSe "]),
    "http10-keep-alive-line-then-close-line":
        b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
        b"Connection: Close\r\n\r\n",
    "http10-close-line-then-keep-alive-line":
        b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Connection: keep-alive\r\n\r\n",
    "three-lines-close-in-the-middle":
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: TE\r\n"
        b"Connection: CLOSE\r\nConnection: keep-alive\r\nTE: trailers\r\n\r\n",
    "head-request-with-close":
        build_request(method="HEAD", headers=[("Connection", "Close")]),
}


@pytest.mark.parametrize("req", list(CLOSE_REQUESTS.values()),
                         ids=list(CLOSE_REQUESTS))
def test_close_token_in_request_wins(server, req):
    closes(server.port, req, 200, pre=[build_request(headers=KA)])


def test_close_token_on_error_document_response_wins(server):
    closes(server.port, build_request(path="/errdoc/missing",
                                      headers=[("Connection", "close")]), 404)


# -- rule 2: responses after which the connection cannot be reused ------------
@pytest.mark.parametrize("path", ["/cgi/stream.cgi", "/stream"],
                         ids=["cgi", "lua"])
def test_http10_keepalive_response_without_length_closes(server, path):
    # HTTP/1.0 cannot chunk: without a Content-Length the body ends at EOF,
    # whatever the client asked for.
    req = build_request(path=path, version="HTTP/1.0", headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert not resp.has("Content-Length"), (
            "test precondition: %s must have no Content-Length\n%s"
            % (path, resp.describe(req)))
        assert resp.body == b"part one\npart two\n", resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert c.eof, "the body was read to EOF: the server must have closed"


def test_http11_response_without_length_is_chunked_and_kept(server):
    kept_sequence(server.port, [
        (build_request(path="/cgi/stream.cgi"), 200),
        (build_request(path="/cgi/stream.cgi", headers=KA), 200)])


@pytest.mark.parametrize("status", STATUSES)
def test_error_status_set_by_handler_closes(server, status):
    # Redirect with a non-3xx status makes httpd answer with that error
    closes(server.port, build_request(path="/status/%d" % status,
                                      headers=KA), status,
           pre=[build_request()])


@pytest.mark.parametrize("status", STATUSES)
def test_error_status_for_http10_keepalive_client_closes(server, status):
    closes(server.port, build_request(path="/status/%d" % status,
                                      version="HTTP/1.0", headers=KA), status)


def test_real_400_bad_header_closes(server):
    req = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
           b"Bad Header Name: x\r\n\r\n")
    closes(server.port, req, 400, pre=[build_request()])


def test_real_408_request_header_timeout_closes(server):
    # RequestReadTimeout header=1: the second request never completes
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request())
        assert_keepalive(first, 5, 100)
        partial = b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        c.send(partial)
        resp = c.read_response(timeout=5)
        assert resp.status == 408, resp.describe(partial)
        assert_closing_without_keepalive(resp, partial)
        assert_closed_soon(c, partial, resp)


def test_real_413_request_body_too_large_closes(server):
    req = build_request(method="POST", path="/limited/small.txt",
                        headers=KA, body=b"x" * 100)
    closes(server.port, req, 413, pre=[build_request()])


def test_real_414_request_uri_too_long_closes(server):
    req = build_request(path="/" + "a" * 9000, headers=KA)
    closes(server.port, req, 414, pre=[build_request()])


def test_real_500_from_broken_cgi_closes(server):
    closes(server.port, build_request(path="/cgi/broken.cgi", headers=KA),
           500, pre=[build_request()])


def test_real_500_from_failing_lua_handler_closes(server):
    closes(server.port, build_request(path="/lua/fail", headers=KA), 500,
           pre=[build_request()])


def test_real_501_unknown_method_closes(server):
    req = build_request(method="FOO", headers=KA)
    closes(server.port, req, 501, pre=[build_request()])


def test_error_document_for_503_still_closes(server):
    # the ErrorDocument is served by an internal redirect to a normal file;
    # the response is still a 503 and must not revive the connection
    resp = closes(server.port, build_request(path="/maint-errdoc",
                                             headers=KA), 503,
                  pre=[build_request()])
    assert resp.body == b"hello\n", (
        "test precondition: ErrorDocument should serve /small.txt\n"
        + resp.describe())


@pytest.mark.parametrize("connection", [[], KA], ids=["no-token",
                                                     "keep-alive"])
def test_unread_expect_100_continue_body_closes(server, connection):
    # The client announces a body and waits for "100 Continue"; httpd
    # answers 302 without asking for the body, so the body may still come:
    # the connection cannot be reused.  (HTTP/1.1 only: httpd ignores
    # Expect from HTTP/1.0 clients and reads their body.)
    req = build_request(method="POST", path="/expect-redirect",
                        headers=connection + [
                            ("Expect", "100-continue"),
                            ("Content-Type", "text/plain"),
                            ("Content-Length", "5")])
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request(headers=KA))
        assert_keepalive(first, 5, 100)
        resp = c.request(req)
        assert resp.status != 100, (
            "test precondition: httpd must not send 100 Continue here\n"
            + resp.describe(req))
        assert resp.status == 302, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


# -- rule 4: special responses are kept, and counted once ---------------------
@pytest.mark.parametrize("sequence", [
    [(build_request(method="HEAD", path="/small.txt"), 200),
     (build_request(method="HEAD", path="/big.bin", headers=KA), 200),
     (build_request(method="HEAD", path="/missing.html"), 404),
     (build_request(path="/small.txt"), 200)],
    [(build_request(path="/lua/204"), 204),
     (build_request(path="/lua/204", headers=KA), 204),
     (build_request(method="HEAD", path="/lua/204"), 204),
     (build_request(path="/small.txt"), 200)],
], ids=["head", "204"])
def test_special_responses_are_kept_and_max_counts_down(server, sequence):
    kept_sequence(server.port, sequence)


def test_304_responses_are_kept_and_max_counts_down(server):
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request(path="/small.txt"))
        etag = first.get("ETag")
        assert etag, first.describe()
    cond = [("If-None-Match", etag)]
    kept_sequence(server.port, [
        (build_request(path="/small.txt", headers=cond), 304),
        (build_request(path="/small.txt", headers=cond + KA), 304),
        (build_request(method="HEAD", path="/small.txt", headers=cond), 304),
        (build_request(path="/small.txt"), 200)])


@pytest.mark.parametrize("path", ["/lua/204", "/small.txt"])
def test_http10_keepalive_204_and_304_are_kept(server, path):
    headers = list(KA)
    status = 204
    if path == "/small.txt":
        with RawConnection("127.0.0.1", server.port) as c:
            headers.append(("If-None-Match",
                            c.request(build_request(path=path)).get("ETag")))
        status = 304
    req = build_request(path=path, version="HTTP/1.0", headers=headers)
    kept_sequence(server.port, [(req, status), (req, status)])


def test_internal_redirects_count_once(server):
    # per-directory rewrite (internal redirect), [PT] rewrite, ErrorDocument
    # with a local URL, DirectoryIndex: each is one response, max -1 each
    resps = kept_sequence(server.port, [
        (build_request(path="/rw/"), 200),
        (build_request(path="/pt/anything"), 200),
        (build_request(path="/errdoc/missing"), 404),
        (build_request(path="/rw/", headers=KA), 200),
        (build_request(path="/"), 200)])
    for resp in resps[:4]:
        assert resp.body == b"hello\n", (
            "test precondition: the redirect should serve /small.txt\n"
            + resp.describe())


def test_error_document_responses_are_kept_and_counted_once(server):
    resps = kept_sequence(server.port, [
        (build_request(path="/errdoc-text/missing"), 404),
        (build_request(path="/errdoc/missing", headers=KA), 404),
        (build_request(path="/errdoc-text/missing"), 404)])
    assert b"no such thing here" in resps[0].body, resps[0].describe()


def test_ssi_page_with_two_subrequests_counts_once(server):
    resps = kept_sequence(server.port, [
        (build_request(path="/ssi.shtml"), 200),
        (build_request(path="/ssi.shtml", headers=KA), 200),
        (build_request(path="/small.txt"), 200)])
    assert resps[0].body == (b"<p>Ahello\nB<html><body>headers test"
                             b"</body></html>\nC</p>\n"), (
        "test precondition: both SSI includes should be expanded\n"
        + resps[0].describe())


def test_pipelined_special_responses_each_counted_once(server):
    reqs = [build_request(path="/ssi.shtml"), build_request(path="/rw/"),
            build_request(path="/lua/204"),
            build_request(method="HEAD", path="/small.txt"),
            build_request(path="/errdoc/missing")]
    with RawConnection("127.0.0.1", server.port) as c:
        c.send(b"".join(reqs))
        for i, req in enumerate(reqs):
            resp = c.read_response(head_only=req.startswith(b"HEAD "))
            assert_keepalive(resp, 5, 100 - i, req)


# -- rule 5: nobody else's Keep-Alive reaches the client ----------------------
FORGERS = ["/cgi/forged.cgi", "/lua/forged", "/hset/", "/halways/", "/hadd/"]


def assert_no_forgery(resp, req):
    # The forged values are "timeout=999, max=999" and "...=998": with the
    # "=", so that an ETag or a date that happens to contain 998 is no match.
    head = resp.head_text()
    assert "=999" not in head and "=998" not in head, (
        "a forged Keep-Alive value reached the client\n" + resp.describe(req))


@pytest.mark.parametrize("path", FORGERS)
@pytest.mark.parametrize("headers", [[], KA], ids=["no-token", "keep-alive"])
def test_forged_keepalive_replaced_by_true_values_on_persistent_response(
        server, path, headers):
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (100, 99):
            req = build_request(path=path, headers=headers)
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)     # exactly one, true values
            assert_no_forgery(resp, req)
        assert_still_open(c, req, resp)


@pytest.mark.parametrize("path", FORGERS)
def test_forged_keepalive_removed_for_http10_client_without_optin(server,
                                                                  path):
    resp = closes(server.port, build_request(path=path, version="HTTP/1.0"),
                  200)
    assert_no_forgery(resp, None)


@pytest.mark.parametrize("path", FORGERS)
def test_forged_keepalive_removed_when_client_closes(server, path):
    resp = closes(server.port, build_request(
        path=path, headers=[("Connection", "close")]), 200,
        pre=[build_request()])
    assert_no_forgery(resp, None)
    assert resp.tokens("Connection") == ["close"], resp.describe()


@pytest.mark.parametrize("path", FORGERS)
def test_forged_keepalive_for_http10_keepalive_client_is_never_a_lie(server,
                                                                     path):
    # Whether httpd knows the length here depends on the handler (a CGI's
    # output may be streamed without one): either the response is persistent
    # and carries the true values, or it closes and carries none.
    req = build_request(path=path, version="HTTP/1.0", headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_no_forgery(resp, req)
        if resp.has("Content-Length"):
            assert_keepalive(resp, 5, 100, req)
            assert_still_open(c, req, resp)
        else:
            assert_closing_without_keepalive(resp, req)


def test_header_always_set_on_closing_error_response_is_removed(server):
    resp = closes(server.port, build_request(path="/halways-503", headers=KA),
                  503, pre=[build_request()])
    assert_no_forgery(resp, None)
