"""KeepAliveMaxLifetime: once a connection is older than this, its next
response says "Connection: close" without Keep-Alive, and the connection
closes; younger connections are kept.  Server config, virtual host and
directory.  The main server also sets KeepAliveIdleTimeout and
KeepAliveAdvertisedTimeout, which the vhosts inherit.

All scenarios run at once (one connection each) in a module fixture.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.assertions import (ParallelMeasurements, assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_idle_close_after,
                                      assert_keepalive, measure_idle_close)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

# Requests meant to find a young connection must be sent this long before
# the lifetime ends, and those meant to find it old this long after.
MARGIN = 0.3

# AcceptFilter: by default httpd on Linux accepts a connection only once its
# first bytes have arrived (TCP_DEFER_ACCEPT), so a connection that is idle
# before its first request is younger for httpd than for the client; with
# "none" both count from the TCP handshake.
CONFIG = """\
AcceptFilter http none
KeepAliveMaxLifetime 1500ms
KeepAliveIdleTimeout 3
KeepAliveAdvertisedTimeout 2
<VirtualHost 127.0.0.1:@PORT@>
    ServerName inherit.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName vhost.test
    KeepAliveMaxLifetime 700ms
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName dir.test
    KeepAliveMaxLifetime 0
    <Location /small.txt>
        KeepAliveMaxLifetime 1
    </Location>
</VirtualHost>
"""

# name: (host, steps); step: (seconds after connecting, path, "keep" or
# "close", the lifetime that applies to that path or None for unlimited)
SCENARIOS = {
    "server-config": ("inherit.test", [
        (0.0, "/", "keep", 1.5), (1.0, "/", "keep", 1.5),
        (1.8, "/", "close", 1.5)]),
    "vhost": ("vhost.test", [
        (0.0, "/", "keep", 0.7), (0.3, "/", "keep", 0.7),
        (1.0, "/", "close", 0.7)]),
    "vhost-zero-is-unlimited-and-location": ("dir.test", [
        (0.0, "/small.txt", "keep", 1.0), (0.5, "/small.txt", "keep", 1.0),
        (1.8, "/", "keep", None), (1.8, "/index.html", "keep", None),
        (1.8, "/small.txt", "close", 1.0)]),
    "old-before-first-request": ("inherit.test", [
        (1.8, "/", "close", 1.5)]),
}


class Step:
    def __init__(self, sent_at, req, resp, expect, lifetime):
        self.sent_at, self.req, self.resp = sent_at, req, resp
        self.expect, self.lifetime = expect, lifetime


def run_scenario(port, host, steps):
    out = []
    with RawConnection("127.0.0.1", port) as c:
        opened = time.monotonic()
        for at, path, expect, lifetime in steps:
            delay = opened + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            req = build_request(host=host, path=path)
            sent_at = time.monotonic() - opened
            resp = c.request(req)
            out.append(Step(sent_at, req, resp, expect, lifetime))
            if expect == "close":
                closed = c.wait_for_close(1.0)
                return out, closed
    return out, None


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        name="lifetime"))


@pytest.fixture(scope="module")
def results(server):
    jobs = {name: (run_scenario, (server.port, host, steps))
            for name, (host, steps) in SCENARIOS.items()}
    jobs["idle"] = (measure_idle_close,
                    (server.port, build_request(host="inherit.test"), 6.0))
    m = ParallelMeasurements(jobs)
    yield m
    m.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_connection_older_than_max_lifetime_closes(results, name):
    steps, closed_after = results.result(name)
    kept = 0
    for step in steps:
        what = "sent %.2fs after connecting (lifetime for this path: %s)\n%s" % (
            step.sent_at, "%.1fs" % step.lifetime if step.lifetime
            else "unlimited", step.resp.describe(step.req))
        assert step.resp.status == 200, what
        if step.expect == "keep":
            assert step.lifetime is None or \
                step.sent_at < step.lifetime - MARGIN / 2, (
                    "test precondition: a request was sent too late to find "
                    "a young connection\n" + what)
            assert_keepalive(step.resp, 2, 100 - kept, step.req)
            kept += 1
        else:
            assert step.sent_at >= step.lifetime, what
            assert_closing_without_keepalive(step.resp, step.req)
            assert closed_after is not None, (
                "the server did not close the connection after a closing "
                "response\n" + what)


def test_server_level_idle_and_advertised_timeouts_are_inherited(results):
    result = results.result("idle")
    assert_keepalive(result.response, 2, 100, result.request)
    assert_idle_close_after(result, 3)


def test_young_connection_is_kept_for_many_requests(server):
    with RawConnection("127.0.0.1", server.port) as c:
        for i in range(20):
            req = build_request(host="vhost.test")
            resp = c.request(req)
            assert_keepalive(resp, 2, 100 - i, req)


JITTER_CONFIG = """\
AcceptFilter http none
KeepAliveMaxLifetime 1s
KeepAliveMaxLifetimeJitter 50%
<VirtualHost 127.0.0.1:@PORT@>
    ServerName jitter.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName exact.test
    KeepAliveMaxLifetimeJitter 0
</VirtualHost>
"""


@pytest.fixture(scope="module")
def jitter_server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=JITTER_CONFIG,
        name="jitter"))


def second_request_closes(port, host, at):
    """Whether the request sent `at` s after connecting closes the
    connection."""
    with RawConnection("127.0.0.1", port) as c:
        opened = time.monotonic()
        c.request(build_request(host=host))
        time.sleep(max(0.0, opened + at - time.monotonic()))
        resp = c.request(build_request(host=host))
        return resp.get("Keep-Alive") is None


def test_jitter_spreads_lifetimes_below_the_maximum(jitter_server):
    """KeepAliveMaxLifetime 1s with 50% jitter: every connection is kept at
    0.4 s, closed at 1.4 s, and at 0.75 s some are kept and some closed.
    (At most 6 connections at once: prefork starts 6 children, and a
    connection waiting for one would be younger for httpd than here.)"""
    port = jitter_server.port
    checks = [("early", 0.4), ("middle", 0.75), ("late", 1.4)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = {name: list(pool.map(lambda _: second_request_closes(port, "jitter.test", at), range(10)))
                   for name, at in checks}
    assert not any(results["early"]), results
    assert all(results["late"]), results
    assert 0 < sum(results["middle"]) < 10, (
        "at 0.75 s of a lifetime jittered between 0.5 and 1 s, some connections "
        "should be kept and some closed: %s" % results)


def test_without_jitter_every_connection_lives_exactly_the_lifetime(jitter_server):
    port = jitter_server.port
    with ThreadPoolExecutor(max_workers=6) as pool:
        kept = list(pool.map(lambda _: second_request_closes(port, "exact.test", 0.75), range(10)))
        closed = list(pool.map(lambda _: second_request_closes(port, "exact.test", 1.4), range(10)))
    assert not any(kept) and all(closed), (kept, closed)


def test_lifetime_does_not_change_close_for_http10_without_optin(server):
    req = build_request(host="inherit.test", version="HTTP/1.0")
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)
