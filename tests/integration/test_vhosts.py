"""Name-based virtual hosts on one address each advertise and enforce their
own KeepAliveTimeout and MaxKeepAliveRequests (the Host header picks)."""

import pytest

from tests.harness.assertions import (ParallelMeasurements, assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_idle_close_after,
                                      assert_keepalive, measure_idle_close,
                                      parse_keepalive)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]
LIMIT = 6.0

# host: (KeepAliveTimeout, MaxKeepAliveRequests)
VHOSTS = {"a.test": (1, 2), "b.test": (3, 4)}

TWO_VHOSTS = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName a.test
    KeepAliveTimeout 1
    MaxKeepAliveRequests 2
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName b.test
    KeepAliveTimeout 3
    MaxKeepAliveRequests 4
</VirtualHost>
"""

# c.test sets no KeepAliveTimeout of its own: it inherits the main server's
# 5 s, but httpd waits with the first vhost's on the address (a.test, 1 s).
INHERITING_VHOST = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName a.test
    KeepAliveTimeout 1
    MaxKeepAliveRequests 2
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName c.test
    MaxKeepAliveRequests 6
</VirtualHost>
"""


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "100"),
                                 extra_config=TWO_VHOSTS, name="vhosts"))


@pytest.fixture(scope="module")
def inherit_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "100"),
                                 extra_config=INHERITING_VHOST,
                                 name="vhost-inherit"))


@pytest.fixture(scope="module")
def idle(server, inherit_server):
    p = server.port
    jobs = {
        "a.test": (measure_idle_close, (p, build_request(host="a.test"),
                                        LIMIT)),
        "b.test": (measure_idle_close, (p, build_request(host="b.test"),
                                        LIMIT)),
        "b.test-http10": (measure_idle_close,
                          (p, build_request(host="b.test", version="HTTP/1.0",
                                            headers=KA), LIMIT)),
        "c.test-no-token": (measure_idle_close,
                            (inherit_server.port,
                             build_request(host="c.test"), LIMIT)),
        "c.test-keep-alive": (measure_idle_close,
                              (inherit_server.port,
                               build_request(host="c.test", headers=KA),
                               LIMIT)),
    }
    m = ParallelMeasurements(jobs)
    yield m
    m.close()


@pytest.mark.parametrize("host", list(VHOSTS))
@pytest.mark.parametrize("headers", [[], KA], ids=["no-token", "keep-alive"])
def test_each_vhost_advertises_its_own_values(server, host, headers):
    timeout, max_ = VHOSTS[host]
    req = build_request(host=host, headers=headers)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, timeout, max_, req)


@pytest.mark.parametrize("host", list(VHOSTS))
def test_host_header_with_port_selects_the_vhost(server, host):
    timeout, max_ = VHOSTS[host]
    req = build_request(host="%s:%d" % (host, server.port))
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert_keepalive(resp, timeout, max_, req)


def test_unknown_host_gets_the_first_vhost_values(server):
    req = build_request(host="unknown.test")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert_keepalive(resp, *VHOSTS["a.test"], request=req)


@pytest.mark.parametrize("host", list(VHOSTS))
def test_each_vhost_enforces_its_own_budget(server, host):
    timeout, max_ = VHOSTS[host]
    req = build_request(host=host)
    with RawConnection("127.0.0.1", server.port) as c:
        for left in range(max_, 0, -1):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, timeout, left, req)
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


@pytest.mark.parametrize("host", list(VHOSTS))
def test_each_vhost_closes_idle_connections_after_its_own_timeout(idle, host):
    timeout, max_ = VHOSTS[host]
    result = idle.result(host)
    assert_keepalive(result.response, timeout, max_, result.request)
    assert_idle_close_after(result, timeout)


def test_http10_keepalive_client_gets_the_vhost_timeout(idle):
    result = idle.result("b.test-http10")
    assert_keepalive(result.response, *VHOSTS["b.test"],
                     request=result.request)
    assert_idle_close_after(result, VHOSTS["b.test"][0])


@pytest.mark.parametrize("token", ["no-token", "keep-alive"])
def test_vhost_without_own_timeout_advertises_the_timeout_it_enforces(idle,
                                                                      token):
    # Whatever httpd waits with for c.test, the header must say it: the
    # server may not close before the advertised T, and must close by T+1.5.
    result = idle.result("c.test-" + token)
    values = result.response.get_all("Keep-Alive")
    assert len(values) == 1, ("expected exactly one Keep-Alive header\n"
                              + result.describe())
    advertised = parse_keepalive(values[0])
    assert advertised.get("max") == 6, result.describe()
    assert_keepalive(result.response, advertised["timeout"], 6,
                     result.request)
    assert_idle_close_after(result, advertised["timeout"])
