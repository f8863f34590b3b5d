"""A response that closes the connection never carries a Keep-Alive header,
and nobody but the module gets to put one on a response."""

import re
import time

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive)
from tests.harness.configs import FORGED_CONFIG, FORGED_VALUE
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]

EXTRA = FORGED_CONFIG + """\
<Location /conn>
    Header always set Connection "keep-alive"
</Location>
<Location /conn-set>
    Header set Connection "keep-alive"
</Location>
<Location /nokeep>
    SetEnv nokeepalive 1
</Location>
<Location /handler-close>
    Header always set Connection "close"
</Location>
SetEnvIf Request_URI "^/down/" downgrade-1.0
LogFormat "%r|%{keepalive}n" kanote
CustomLog "@DIR@/logs/note.log" kanote
"""
FILES = {"htdocs/%s/index.html" % d: b"hello\n"
         for d in ("conn", "conn-set", "nokeep", "down", "handler-close")}


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "3"), extra_config=EXTRA,
        extra_modules=["env", "setenvif"], files=FILES, name="closing"))


@pytest.fixture(scope="module")
def negative_max_server(mpm, module_path):
    # httpd accepts a negative MaxKeepAliveRequests; only 0 means unlimited,
    # and core then closes after every response.
    yield from serve(HttpdServer(mpm, module_path, keepalive=("On", "5", "-1"),
                                 name="negmax"))


@pytest.fixture(scope="module")
def keepalive_off_server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("Off", "5", "100"),
        extra_config=FORGED_CONFIG, name="kaoff"))


def closes_without_keepalive(port, req, status=200, pre=()):
    """Send ``pre`` requests then ``req`` on one connection; the last
    response must close without Keep-Alive and the socket must close."""
    with RawConnection("127.0.0.1", port) as c:
        for p in pre:
            c.request(p)
        resp = c.request(req)
        assert resp.status == status, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)
        return resp


# -- the client asks to close ------------------------------------------------
def test_http11_connection_close_request_gets_no_keepalive(server):
    closes_without_keepalive(server.port,
                             build_request(headers=[("Connection", "close")]))


def test_http11_connection_close_after_persistent_requests(server):
    closes_without_keepalive(server.port,
                             build_request(headers=[("Connection", "close")]),
                             pre=[build_request()])


def test_close_token_in_second_connection_header_line_wins(server):
    req = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Connection: keep-alive\r\nConnection: CLOSE\r\n\r\n")
    closes_without_keepalive(server.port, req)


def test_close_token_among_other_connection_tokens(server):
    req = build_request(headers=[("Connection", "keep-alive, TE, Close")])
    closes_without_keepalive(server.port, req)


# -- the server's budget is used up ------------------------------------------
def test_last_request_of_budget_gets_no_keepalive(server):
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (3, 2, 1):
            req = build_request(headers=KA if left == 2 else [])
            resp = c.request(req)
            assert_keepalive(resp, 5, left, req)
        req = build_request(headers=KA)
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


# -- errors that drop the connection ----------------------------------------
MALFORMED = {
    "garbage-request-line": b"GARBAGE\r\n\r\n",
    "double-space-request-line":
        b"GET  / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    "extra-field-in-request-line":
        b"GET / HTTP/1.1 x\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    "header-line-without-colon":
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
        b"this is not a header\r\n\r\n",
    "http11-without-host":
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
}


@pytest.mark.parametrize("req", list(MALFORMED.values()), ids=list(MALFORMED))
def test_bad_request_400_gets_no_keepalive(server, req):
    closes_without_keepalive(server.port, req, status=400)


def test_bad_request_400_on_a_persistent_connection_gets_no_keepalive(server):
    closes_without_keepalive(server.port, MALFORMED["garbage-request-line"],
                             status=400, pre=[build_request()])


@pytest.mark.parametrize("req,status", [
    (b"FOO / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
     501),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
], ids=["501-unknown-method", "414-uri-too-long"])
def test_error_status_that_drops_connection_gets_no_keepalive(server, req,
                                                              status):
    closes_without_keepalive(server.port, req, status=status)


# -- HTTP/1.0 without opt-in, downgraded and nokeepalive requests ------------
@pytest.mark.parametrize("req", [
    build_request(version="HTTP/1.0"),
    build_request(path="/nokeep/", headers=KA),
    build_request(path="/down/"),
    build_request(path="/handler-close/", headers=KA),
], ids=["http10-without-optin", "nokeepalive-env", "downgrade-10-without-optin",
        "handler-connection-close"])
def test_request_that_must_close_gets_no_keepalive(server, req):
    closes_without_keepalive(server.port, req)


def test_negative_max_keepalive_requests_closes_like_core(negative_max_server):
    # Core closes after every response here; the module must agree (the
    # client sees no Keep-Alive, and the module must not log that its policy
    # disagreed with core).
    for req in (build_request(), build_request(headers=KA),
                build_request(version="HTTP/1.0", headers=KA)):
        closes_without_keepalive(negative_max_server.port, req)
    problems = negative_max_server.new_log_problems()
    assert not problems, (
        "mod_keepalive logged errors for MaxKeepAliveRequests -1 (requests "
        "as above, each answered with Connection: close):\n"
        + "\n".join(problems))


def test_keepalive_off_gets_no_keepalive(keepalive_off_server):
    for req in (build_request(), build_request(headers=KA),
                build_request(version="HTTP/1.0", headers=KA)):
        closes_without_keepalive(keepalive_off_server.port, req)


# -- Keep-Alive / Connection set by someone else (mod_headers) ---------------
def test_forged_keepalive_removed_when_client_closes(server):
    resp = closes_without_keepalive(
        server.port, build_request(path="/hdr/",
                                   headers=[("Connection", "close")]))
    assert FORGED_VALUE not in resp.head_text(), resp.describe()


def test_forged_keepalive_removed_for_http10_without_optin(server):
    closes_without_keepalive(server.port,
                             build_request(path="/hdr/", version="HTTP/1.0"))


def test_forged_keepalive_removed_on_last_request_of_budget(server):
    req = build_request(path="/hdr/")
    closes_without_keepalive(server.port, req, pre=[req, req, req])


def test_forged_keepalive_removed_when_keepalive_is_off(keepalive_off_server):
    closes_without_keepalive(keepalive_off_server.port,
                             build_request(path="/hdr/"))


@pytest.mark.parametrize("headers", [[], KA], ids=["no-token", "keep-alive"])
def test_forged_keepalive_replaced_by_true_values(server, headers):
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (3, 2):
            req = build_request(path="/hdr/", headers=headers)
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)     # exactly one, true values


def test_forged_keepalive_removed_from_http10_optin_with_true_values(server):
    req = build_request(path="/hdr/", version="HTTP/1.0", headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert_keepalive(resp, 5, 3, req)


def test_forged_connection_keepalive_removed_when_client_closes(server):
    resp = closes_without_keepalive(
        server.port, build_request(path="/conn/",
                                   headers=[("Connection", "close")]))
    assert resp.tokens("Connection") == ["close"], resp.describe()


def test_forged_connection_keepalive_on_persistent_response(server):
    req = build_request(path="/conn/")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 3, req)


# -- the access log says why, where core decided alone -------------------------
def test_access_log_note_names_the_reason_core_closed_for(server):
    # No directive of the module applies here: core decides every response,
    # and the module reports it with the policy's reasons, in the policy's
    # order ("Connection: close" from the handler comes before the budget).
    port = server.port
    kept = build_request(path="/?id=k")

    def on_one_connection(*reqs):
        with RawConnection("127.0.0.1", port) as c:
            for req in reqs:
                c.request(req)
            assert_closed_soon(c, reqs[-1], None)

    on_one_connection(kept, kept, kept, build_request(path="/?id=budget"))
    on_one_connection(build_request(path="/?id=client",
                                    headers=[("Connection", "close")]))
    on_one_connection(build_request(path="/handler-close/?id=resp"))
    on_one_connection(kept, kept, kept,
                      build_request(path="/handler-close/?id=both"))
    on_one_connection(build_request(path="/nokeep/?id=env"))
    on_one_connection(build_request(path="/down/?id=down"))
    on_one_connection(build_request(path="/?id=http10", version="HTTP/1.0"))
    on_one_connection(build_request(path="/?id=err",
                                    headers=[("Content-Length", "x")]))
    want = {
        "k": "keep timeout=5 max=3",
        "budget": "close budget-reached",
        "client": "close client-close",
        "resp": "close response-close",
        "both": "close response-close",
        "env": "close disabled-by-env",
        "down": "close http10-no-optin",
        "http10": "close http10-no-optin",
        "err": "close error-status",
    }
    log = server.dir / "logs" / "note.log"
    deadline = time.monotonic() + 10
    while True:
        text = log.read_text() if log.exists() else ""
        got = {}
        for line in text.splitlines():
            req, note = line.split("|")
            m = re.search(r"\?id=(\w+) ", req)
            if m:
                got.setdefault(m.group(1), note)
        if set(got) >= set(want) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    wrong = {i: got.get(i) for i, note in want.items() if got.get(i) != note}
    assert not wrong, "notes differ: %r\nwanted %r\n--- %s ---\n%s" % (
        wrong, want, log, text)


@pytest.mark.parametrize("path", ["/conn/", "/conn-set/"])
@pytest.mark.parametrize("headers", [[], KA], ids=["plain", "token"])
def test_handler_keepalive_token_is_not_repeated_on_a_kept_response(
        server, path, headers):
    # The handler's "Connection: keep-alive" goes; the module's remains,
    # once.
    req = build_request(path=path, headers=headers)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 3, req)
        assert resp.get_all("Connection") == ["Keep-Alive"], resp.describe(req)
