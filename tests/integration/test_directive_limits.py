"""KeepAliveMaxRequests, KeepAliveHTTP10 and KeepAliveDisableIf, in server
config, per virtual host and (where allowed) per directory.

The main server sets all three; inherit.test, the default vhost, sets
nothing and shows the server-level effect; the other vhosts override.
"""

import re
import time

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive, assert_still_open)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]

ECHO_LUA = b"""\
function handle(r)
  r.content_type = "text/plain"
  local body = r:requestbody() or ""
  r:puts("got " .. string.len(body) .. " bytes\\n")
  return apache2.OK
end
"""

CONFIG = """\
KeepAliveMaxRequests 7
KeepAliveHTTP10 Off
KeepAliveDisableIf "%{REQUEST_URI} =~ m#^/dl/#"

<VirtualHost 127.0.0.1:@PORT@>
    ServerName inherit.test
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName three.test
    MaxKeepAliveRequests 50
    KeepAliveMaxRequests 3
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName unlimited.test
    MaxKeepAliveRequests 2
    KeepAliveMaxRequests 0
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName above-core.test
    MaxKeepAliveRequests 2
    KeepAliveMaxRequests 4
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName dir.test
    KeepAliveMaxRequests 10
    <Location /few>
        KeepAliveMaxRequests 2
    </Location>
    <Location /many>
        KeepAliveMaxRequests 0
    </Location>
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName dir-above-core.test
    MaxKeepAliveRequests 2
    <Location /many>
        KeepAliveMaxRequests 0
    </Location>
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName http10-on.test
    KeepAliveHTTP10 On
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName ua.test
    KeepAliveDisableIf "%{HTTP_USER_AGENT} =~ /BadBot/"
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName method.test
    LuaMapHandler "^/post/echo$" "@DIR@/scripts/echo.lua" handle
    <Location /post>
        KeepAliveDisableIf "%{REQUEST_METHOD} == 'POST'"
    </Location>
</VirtualHost>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName env.test
    SetEnvIf Request_URI "^/flagged/" foo=1
    <Location /set-in-location>
        SetEnv foo 1
    </Location>
    KeepAliveDisableIf "-n %{ENV:foo}"
</VirtualHost>
"""

FILES = {"htdocs/%s/index.html" % d: b"hello\n"
         for d in ("few", "many", "dl", "post", "flagged",
                   "set-in-location")}
FILES["scripts/echo.lua"] = ECHO_LUA


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        extra_modules=["lua", "env", "setenvif"], files=FILES,
        name="limits"))


def countdown_then_close(server, host, budget, path="/"):
    with RawConnection("127.0.0.1", server.port) as c:
        for left in range(budget, 0, -1):
            req = build_request(host=host, path=path,
                                headers=KA if left % 2 else [])
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)
        req = build_request(host=host, path=path)
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def sequence(server, host, steps, headers=()):
    """steps: (path, expected max or None for unlimited, or "close")."""
    with RawConnection("127.0.0.1", server.port) as c:
        for path, expect in steps:
            req = build_request(host=host, path=path, headers=list(headers))
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            if expect == "close":
                assert_closing_without_keepalive(resp, req)
                assert_closed_soon(c, req, resp)
                return
            assert_keepalive(resp, 5, expect, req)
        assert_still_open(c, req, resp)


# -- KeepAliveMaxRequests ----------------------------------------------------
def test_max_requests_in_server_config_counts_down_then_closes(server):
    countdown_then_close(server, "inherit.test", 7)


def test_access_log_counts_the_closing_response_as_core_does(server):
    # Core's %k counts the response that uses up the budget as one more
    # request on the connection: 0..6 kept, then 7 on the one that closes.
    countdown_then_close(server, "inherit.test", 7, path="/?kcount")
    deadline = time.monotonic() + 3
    while True:
        counts = [int(m) for m in re.findall(r'"GET /\?kcount HTTP/1\.1" 200 \S+ ka=(\d+)',
                                             server.access_log())]
        if len(counts) >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert counts == list(range(8)), server.access_log()


def test_max_requests_in_vhost_overrides_core_and_server(server):
    countdown_then_close(server, "three.test", 3)


def test_max_requests_above_core_limit_is_honoured(server):
    # core's MaxKeepAliveRequests 2 would close on the 3rd response
    countdown_then_close(server, "above-core.test", 4)


def test_max_requests_zero_is_unlimited(server):
    # core's MaxKeepAliveRequests 2 would close on the 3rd response
    sequence(server, "unlimited.test", [("/", None)] * 12)


def test_max_requests_in_location_counts_down_then_closes(server):
    sequence(server, "dir.test", [("/few/", 2), ("/few/", 1),
                                  ("/few/", "close")])


def test_max_requests_in_location_counts_responses_already_kept(server):
    # three responses kept under the vhost's 10: /few's 2 is used up
    sequence(server, "dir.test", [("/", 10), ("/", 9), ("/", 8),
                                  ("/few/", "close")])


def test_max_requests_switches_per_response_on_one_connection(server):
    sequence(server, "dir.test", [("/", 10), ("/few/", 1), ("/", 8),
                                  ("/many/", None), ("/", 6)])


def test_max_requests_unlimited_location_then_limited_vhost(server):
    sequence(server, "dir.test", [("/many/", None)] * 10 + [("/", "close")])


@pytest.mark.parametrize("headers", [[], KA], ids=["plain", "token"])
def test_max_requests_location_above_the_servers_core_limit(server, headers):
    # Core decides with the vhost's MaxKeepAliveRequests 2, and would close
    # the 3rd response, with or without the keep-alive token in the request.
    sequence(server, "dir-above-core.test", [("/many/", None)] * 6,
             headers=headers)


# -- KeepAliveHTTP10 ---------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/small.txt"])
def test_http10_off_in_server_config_closes_opted_in_client(server, path):
    req = build_request(host="inherit.test", path=path, version="HTTP/1.0",
                        headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_http10_off_does_not_touch_http11_clients(server):
    sequence(server, "inherit.test", [("/", 7), ("/", 6)])


def test_http10_on_in_vhost_keeps_opted_in_client(server):
    req = build_request(host="http10-on.test", version="HTTP/1.0",
                        headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (7, 6, 5):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)
        assert_still_open(c, req, resp)


def test_http10_on_still_closes_client_without_opt_in(server):
    req = build_request(host="http10-on.test", version="HTTP/1.0")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


# -- KeepAliveDisableIf ------------------------------------------------------
def disabled(server, req, status=200, pre=None):
    with RawConnection("127.0.0.1", server.port) as c:
        if pre is not None:
            first = c.request(pre)
            assert first.status == 200, first.describe(pre)
            assert "close" not in first.tokens("Connection"), (
                "test precondition: the first request should be kept\n"
                + first.describe(pre))
        resp = c.request(req)
        assert resp.status == status, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_disable_if_in_server_config_closes_matching_uri(server):
    disabled(server, build_request(host="inherit.test", path="/dl/",
                                   headers=KA),
             pre=build_request(host="inherit.test"))


def test_disable_if_in_server_config_keeps_other_uris(server):
    sequence(server, "inherit.test", [("/", 7), ("/small.txt", 6),
                                      ("/dl/", "close")])


@pytest.mark.parametrize("agent", ["BadBot/1.0", "Mozilla/5.0 (BadBot)"])
def test_disable_if_in_vhost_closes_matching_user_agent(server, agent):
    req = build_request(host="ua.test", headers=[("User-Agent", agent)] + KA)
    disabled(server, req, pre=build_request(host="ua.test"))


def test_disable_if_in_vhost_keeps_other_user_agents(server):
    with RawConnection("127.0.0.1", server.port) as c:
        for left, agent in zip((7, 6, 5), ("GoodBot/1.0", "curl/8", None)):
            headers = [("User-Agent", agent)] if agent else []
            req = build_request(host="ua.test", headers=headers)
            resp = c.request(req)
            assert_keepalive(resp, 5, left, req)
        req = build_request(host="ua.test",
                            headers=[("User-Agent", "BadBot/2")])
        resp = c.request(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_disable_if_in_location_closes_post(server):
    req = build_request(method="POST", host="method.test", path="/post/echo",
                        headers=KA, body=b"hello")
    disabled(server, req, pre=build_request(host="method.test",
                                            path="/post/echo"))


def test_disable_if_in_location_keeps_get_and_other_locations(server):
    with RawConnection("127.0.0.1", server.port) as c:
        reqs = [build_request(host="method.test", path="/post/echo"),
                build_request(method="POST", host="method.test",
                              path="/small.txt", body=b"x"),
                build_request(host="method.test", path="/post/")]
        statuses = [200, 200, 200]      # httpd serves a static file to POST
        for i, (req, status) in enumerate(zip(reqs, statuses)):
            resp = c.request(req)
            assert resp.status == status, resp.describe(req)
            assert_keepalive(resp, 5, 7 - i, req)


@pytest.mark.parametrize("path", ["/flagged/", "/set-in-location/"],
                         ids=["setenvif", "setenv-in-location"])
def test_disable_if_on_env_closes(server, path):
    disabled(server, build_request(host="env.test", path=path, headers=KA),
             pre=build_request(host="env.test"))


def test_disable_if_on_env_keeps_requests_without_the_variable(server):
    sequence(server, "env.test", [("/", 7), ("/small.txt", 6)])


def test_disable_if_applies_to_http10_opted_in_client(server):
    # http10-on.test keeps HTTP/1.0 clients and inherits the server-level
    # condition on /dl/
    req = build_request(host="http10-on.test", path="/dl/",
                        version="HTTP/1.0", headers=KA)
    disabled(server, req, pre=build_request(host="http10-on.test",
                                            version="HTTP/1.0", headers=KA))
