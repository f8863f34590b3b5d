"""The server really keeps an idle connection for the advertised time T and
closes it soon after (EOF within T + 1.5 s, not before T).

All measurements of one server run at once on separate connections (started
by the module-scoped ``idle`` fixture), so this file costs about max(T) per
MPM instead of the sum.
"""

import pytest

from tests.harness.assertions import (EARLY_SLACK, LATE_SLACK,
                                      ParallelMeasurements,
                                      assert_closing_without_keepalive,
                                      assert_idle_close_after,
                                      assert_keepalive, measure_idle_close)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import build_request
from tests.harness.servers import serve

T = 2
KA = [("Connection", "keep-alive")]
LIMIT = T + LATE_SLACK + 1.5        # how long a measurement waits for EOF


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", str(T), "100"),
                                 name="idle"))


@pytest.fixture(scope="module")
def subsecond_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "1500ms", "100"),
                                 name="idle-subsecond"))


@pytest.fixture(scope="module")
def idle(server, subsecond_server):
    p, q = server.port, subsecond_server.port
    jobs = {
        "http11": (measure_idle_close, (p, build_request(), LIMIT)),
        "http11-token": (measure_idle_close,
                         (p, build_request(headers=KA), LIMIT)),
        "http10-token": (measure_idle_close,
                         (p, build_request(version="HTTP/1.0", headers=KA),
                          LIMIT)),
        "after-three": (measure_idle_close,
                        (p, build_request(), LIMIT,
                         [build_request(), build_request(headers=KA)])),
        "http10-plain": (measure_idle_close,
                         (p, build_request(version="HTTP/1.0"), LIMIT)),
        "subsecond": (measure_idle_close, (q, build_request(), LIMIT)),
    }
    m = ParallelMeasurements(jobs)
    yield m
    m.close()


def check_idle(result, max_):
    """Advertised timeout=T, and the server waited T before closing."""
    assert result.response.status == 200, result.describe()
    assert_keepalive(result.response, T, max_, result.request)
    assert_idle_close_after(result, T)


def test_idle_http11_connection_closed_after_advertised_timeout(idle):
    check_idle(idle.result("http11"), 100)


def test_idle_http11_keepalive_connection_closed_after_advertised_timeout(
        idle):
    check_idle(idle.result("http11-token"), 100)


def test_idle_http10_keepalive_connection_closed_after_advertised_timeout(
        idle):
    check_idle(idle.result("http10-token"), 100)


def test_idle_timer_restarts_after_each_request(idle):
    # third request on the connection: max=98, and a full T of idle time
    check_idle(idle.result("after-three"), 98)


def test_http10_without_optin_closed_right_after_response(idle):
    result = idle.result("http10-plain")
    assert_closing_without_keepalive(result.response, result.request)
    assert result.elapsed is not None and result.elapsed < 0.5, (
        "expected the server to close right after the response\n"
        + result.describe())


def test_subsecond_timeout_advertised_rounded_down_and_enforced(idle):
    # KeepAliveTimeout 1500ms: the header says 1 (never rounded up to 2), and
    # a client trusting it is safe: the server waits at least 1 s, in fact
    # 1.5 s, and closes within 1 + 1.5 s.
    result = idle.result("subsecond")
    print("idle connection closed after %s (KeepAliveTimeout 1500ms)"
          % ("%.3fs" % result.elapsed if result.elapsed is not None
             else "never"))
    assert_keepalive(result.response, 1, 100, result.request)
    assert result.elapsed is not None, result.describe()
    assert result.elapsed >= 1.5 - EARLY_SLACK, (
        "server closed before its configured 1500ms\n" + result.describe())
    assert result.elapsed <= 1 + LATE_SLACK, result.describe()
