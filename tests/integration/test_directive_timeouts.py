"""KeepAliveIdleTimeout and KeepAliveAdvertisedTimeout: what is advertised
and what is enforced, per virtual host and per directory.

- Server/vhost KeepAliveIdleTimeout is that vhost's enforced idle timeout
  under every MPM, advertised rounded down to whole seconds.
- In a directory, prefork and worker wait exactly that long after each
  response from there; event, whose keep-alive queues are per vhost,
  advertises min(directory value, vhost's) and holds the vhost's time.
- KeepAliveAdvertisedTimeout is what timeout= says, never above what the
  server waits: the server still waits the idle timeout.
- 0 disables keep-alive where it is set.

All idle measurements of a server run at once (module-scoped fixtures), so
the file costs about the longest one per MPM.  The same configuration runs
a second time with mod_reqtimeout and Debian's RequestReadTimeout, which
take over the socket timeout while waiting for the next request.
"""

import pytest

from tests.harness.assertions import (EARLY_SLACK, LATE_SLACK,
                                      ParallelMeasurements, assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_idle_close_after,
                                      assert_keepalive, measure_idle_close)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]
LIMIT = 4 + LATE_SLACK + 1.0      # longest expected wait, plus margin

CONFIG = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName four.test
    KeepAliveTimeout 4
    <Location /short>
        KeepAliveIdleTimeout 1500ms
    </Location>
    <Location /off>
        KeepAliveIdleTimeout 0
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName one.test
    KeepAliveTimeout 1
    <Location /long>
        KeepAliveIdleTimeout 3
    </Location>
    <Location /long-advertised>
        KeepAliveIdleTimeout 3
        KeepAliveAdvertisedTimeout 2
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName idle.test
    KeepAliveTimeout 4
    KeepAliveIdleTimeout 2
    <Location /advertise-less>
        KeepAliveAdvertisedTimeout 1
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName subsecond.test
    KeepAliveIdleTimeout 1500ms
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName advertised.test
    KeepAliveTimeout 3
    KeepAliveAdvertisedTimeout 1
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName clamp.test
    KeepAliveTimeout 2
    # no idle timeout in this section, so accepted; clamped at run time
    <Location /clamped>
        KeepAliveAdvertisedTimeout 4
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName zero.test
    KeepAliveIdleTimeout 0
</VirtualHost>
"""

# Debian's mods-available/reqtimeout.conf
REQTIMEOUT_CONFIG = """\
RequestReadTimeout header=20-40,minrate=500
RequestReadTimeout body=10,minrate=500
"""

FILES = {"htdocs/%s/index.html" % d: b"hello\n"
         for d in ("short", "off", "long", "long-advertised",
                   "advertise-less", "clamped")}


def exact(mpm):
    """prefork and worker wait per response; event per vhost."""
    return mpm != "event"


# name: (host, path, pre-request paths,
#        (advertised, waited) under prefork/worker, same under event)
CASES = {
    "vhost-core-timeout": ("four.test", "/", [], (4, 4), (4, 4)),
    "directory-shorter": ("four.test", "/short/", [], (1, 1.5), (1, 4)),
    "after-directory-shorter": ("four.test", "/", ["/short/"], (4, 4),
                                (4, 4)),
    "directory-longer": ("one.test", "/long/", [], (3, 3), (1, 1)),
    "after-directory-longer": ("one.test", "/", ["/long/"], (1, 1), (1, 1)),
    "directory-longer-advertised-less": ("one.test", "/long-advertised/", [],
                                         (2, 3), (1, 1)),
    "vhost-idle-timeout-overrides-core": ("idle.test", "/", [], (2, 2),
                                          (2, 2)),
    "directory-advertises-less": ("idle.test", "/advertise-less/", [],
                                  (1, 2), (1, 2)),
    "vhost-subsecond": ("subsecond.test", "/", [], (1, 1.5), (1, 1.5)),
    "vhost-advertises-less": ("advertised.test", "/", [], (1, 3), (1, 3)),
    "advertised-clamped-to-enforced": ("clamp.test", "/clamped/", [], (2, 2),
                                       (2, 2)),
    "http10-directory-shorter": ("four.test", "/short/", [], (1, 1.5),
                                 (1, 4)),
}
REQTIMEOUT_CASES = ["directory-shorter", "after-directory-shorter",
                    "directory-longer", "vhost-subsecond",
                    "vhost-advertises-less"]


def case_request(name, host, path):
    if name.startswith("http10"):
        return build_request(host=host, path=path, version="HTTP/1.0",
                             headers=KA)
    return build_request(host=host, path=path)


def expected(mpm, name):
    host, path, pre, per_response, event = CASES[name]
    return per_response if exact(mpm) else event


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        files=FILES, name="timeouts"))


@pytest.fixture(scope="module")
def reqtimeout_server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"),
        extra_config=REQTIMEOUT_CONFIG + CONFIG, extra_modules=["reqtimeout"],
        files=FILES, name="timeouts-reqtimeout"))


@pytest.fixture(scope="module")
def idle(server, reqtimeout_server):
    jobs = {}
    for name, (host, path, pre, _, _) in CASES.items():
        pre_reqs = [build_request(host=host, path=p) for p in pre]
        jobs[name] = (measure_idle_close,
                      (server.port, case_request(name, host, path), LIMIT,
                       pre_reqs))
        if name in REQTIMEOUT_CASES:
            jobs["reqtimeout-" + name] = (
                measure_idle_close,
                (reqtimeout_server.port, case_request(name, host, path),
                 LIMIT, pre_reqs))
    m = ParallelMeasurements(jobs)
    yield m
    m.close()


def check_case(idle, mpm, name, key=None):
    result = idle.result(key or name)
    advertised, waited = expected(mpm, name)
    pre = len(CASES[name][2])
    assert result.response.status == 200, result.describe()
    assert_keepalive(result.response, advertised, 100 - pre, result.request)
    # never closes before what was advertised, and holds what is enforced
    assert result.elapsed is None or \
        result.elapsed >= advertised - EARLY_SLACK, (
            "server closed before the advertised timeout=%d\n%s"
            % (advertised, result.describe()))
    assert_idle_close_after(result, waited)


@pytest.mark.parametrize("name", list(CASES))
def test_advertised_and_enforced_idle_timeout(idle, mpm, name):
    check_case(idle, mpm, name)


@pytest.mark.parametrize("name", REQTIMEOUT_CASES)
def test_advertised_and_enforced_idle_timeout_with_mod_reqtimeout(idle, mpm,
                                                                   name):
    check_case(idle, mpm, name, "reqtimeout-" + name)


def test_directory_idle_timeout_zero_disables_keepalive(server):
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request(host="four.test"))
        assert_keepalive(first, 4, 100)
        req = build_request(host="four.test", path="/off/", headers=KA)
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_vhost_idle_timeout_zero_disables_keepalive(server, version):
    req = build_request(host="zero.test", version=version, headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_directory_timeout_is_advertised_per_response(server, mpm):
    # on one connection, each response says its own value
    paths = ["/", "/short/", "/", "/short/"]
    with RawConnection("127.0.0.1", server.port) as c:
        for i, path in enumerate(paths):
            req = build_request(host="four.test", path=path)
            resp = c.request(req)
            timeout = 1 if path == "/short/" else 4
            assert_keepalive(resp, timeout, 100 - i, req)
