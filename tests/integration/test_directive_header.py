"""KeepAliveHeader Always|OnRequest|Never: when the Keep-Alive header is sent
on a persistent response, in each context where it is allowed (server
config, <VirtualHost>, <Directory>, <Location>, <Files>, <If>).  The
connection is kept or closed the same way whatever the mode; only the
header changes."""

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive,
                                      assert_persistent_without_keepalive,
                                      assert_still_open)
from tests.harness.configs import RATE_LIMITED_CONFIG
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]

# The main server says OnRequest; inherit.test (the default vhost) sets
# nothing, always.test and never.test override it, and always.test has a
# section of every kind that switches it again.
CONFIG = """\
KeepAliveHeader OnRequest
<VirtualHost 127.0.0.1:@PORT@>
    ServerName inherit.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName always.test
    KeepAliveHeader Always
    <Directory "@DOCROOT@/dir-never">
        KeepAliveHeader Never
    </Directory>
    <Location /loc-never>
        KeepAliveHeader Never
    </Location>
    <Location /loc-onrequest>
        KeepAliveHeader OnRequest
    </Location>
    <Files "files-never.txt">
        KeepAliveHeader Never
    </Files>
    <If "%{QUERY_STRING} == 'never'">
        KeepAliveHeader Never
    </If>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName never.test
    KeepAliveHeader Never
    <Location /loc-always>
        KeepAliveHeader Always
    </Location>
""" + RATE_LIMITED_CONFIG + "</VirtualHost>\n"

FILES = {"htdocs/%s/index.html" % d: b"hello\n"
         for d in ("dir-never", "loc-never", "loc-onrequest", "loc-always",
                   "rate-limited")}
FILES["htdocs/files-never.txt"] = b"hello\n"


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        files=FILES, extra_modules=["ratelimit", "env"], name="header-mode"))


def run(server, reqs):
    """Send ``reqs`` on one connection; return the responses (each 200)."""
    out = []
    with RawConnection("127.0.0.1", server.port) as c:
        for req in reqs:
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            out.append(resp)
        assert_still_open(c, reqs[-1], out[-1])
    return out


def check(server, host, path, version, headers, expect_header):
    """Three requests on one connection: all persistent; with the header
    (max 100, 99, 98) or without it."""
    req = build_request(host=host, path=path, version=version,
                        headers=headers)
    for i, resp in enumerate(run(server, [req, req, req])):
        if expect_header:
            assert_keepalive(resp, 5, 100 - i, req)
        else:
            assert_persistent_without_keepalive(resp, req)
            if version == "HTTP/1.0":
                # still persistent, and says so
                assert "keep-alive" in resp.tokens("Connection"), (
                    "an HTTP/1.0 client that opted in must be told "
                    "'Connection: Keep-Alive'\n" + resp.describe(req))


# (host, path, expected mode)
PLACES = [
    ("inherit.test", "/", "OnRequest"),              # server config
    ("always.test", "/", "Always"),                  # <VirtualHost>
    ("never.test", "/", "Never"),                    # <VirtualHost>
    ("always.test", "/dir-never/", "Never"),         # <Directory>
    ("always.test", "/loc-never/", "Never"),         # <Location>
    ("always.test", "/loc-onrequest/", "OnRequest"),  # <Location>
    ("always.test", "/files-never.txt", "Never"),    # <Files>
    ("always.test", "/?never", "Never"),             # <If>
    ("always.test", "/?other", "Always"),            # <If> not matching
    ("never.test", "/loc-always/", "Always"),        # <Location>
]
IDS = ["server-config-onrequest", "vhost-always", "vhost-never",
       "directory-never", "location-never", "location-onrequest",
       "files-never", "if-never", "if-not-matching", "location-always"]

CLIENTS = {
    "http11-no-token": ("HTTP/1.1", []),
    "http11-keep-alive": ("HTTP/1.1", KA),
    "http10-keep-alive": ("HTTP/1.0", KA),
}


def header_expected(mode, client):
    if mode == "Always":
        return True
    if mode == "Never":
        return False
    return client != "http11-no-token"      # OnRequest: the token was sent


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("host,path,mode", PLACES, ids=IDS)
def test_keepalive_header_mode(server, host, path, mode, client):
    version, headers = CLIENTS[client]
    check(server, host, path, version, headers, header_expected(mode, client))


def test_never_mode_still_counts_requests_and_closes_at_the_limit(server):
    # Never hides the header; the budget still applies and the response
    # that uses it up says close
    with RawConnection("127.0.0.1", server.port) as c:
        for _ in range(100):
            req = build_request(host="never.test")
            resp = c.request(req)
            assert_persistent_without_keepalive(resp, req)
        req = build_request(host="never.test")
        resp = c.request(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_header_mode_does_not_change_per_response_on_one_connection(server):
    # the mode is decided per response: Always, then Never, then Always
    reqs = [build_request(host="always.test", path="/"),
            build_request(host="always.test", path="/loc-never/"),
            build_request(host="always.test", path="/small.txt")]
    resps = run(server, reqs)
    assert_keepalive(resps[0], 5, 100, reqs[0])
    assert_persistent_without_keepalive(resps[1], reqs[1])
    assert_keepalive(resps[2], 5, 98, reqs[2])


@pytest.mark.parametrize("host", ["always.test", "never.test", "inherit.test"])
def test_closing_responses_never_carry_keepalive_in_any_mode(server, host):
    for req in (build_request(host=host, headers=[("Connection", "close")]),
                build_request(host=host, version="HTTP/1.0")):
        with RawConnection("127.0.0.1", server.port) as c:
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_closing_without_keepalive(resp, req)
            assert_closed_soon(c, req, resp)


@pytest.mark.parametrize("pad", [0, 9, 18, 27, 36, 45, 54])
@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_never_with_a_filter_that_splits_the_header_block(server, version,
                                                          pad):
    # The Keep-Alive line core prints for a client that sent the token is
    # taken out whole, whatever filter comes after: the header block stays
    # well-formed, the connection persists and carries the next request.
    req = build_request(host="never.test",
                        path="/rate-limited/?" + "p" * pad,
                        version=version, headers=KA)
    for resp in run(server, [req, req]):
        assert_persistent_without_keepalive(resp, req)
        assert resp.body == b"hello\n", resp.describe(req)
        assert resp.get("X-Pad") == "p" * pad, resp.describe(req)
        if version == "HTTP/1.0":
            assert "keep-alive" in resp.tokens("Connection"), resp.describe(req)
