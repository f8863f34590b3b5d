"""Assertions about keep-alive responses and connections, and idle-close
time measurement (one connection each, run in parallel)."""

import re
from concurrent.futures import ThreadPoolExecutor

from tests.harness.rawhttp import RawConnection

# Idle-close timing tolerance: the server's idle clock starts when it has
# written the response, a little before we have read it, so EOF may come
# slightly "early" from our point of view; and it must come soon after T.
EARLY_SLACK = 0.1
LATE_SLACK = 1.5


# -- assertions --------------------------------------------------------------
def keepalive_value(timeout, max_):
    """The exact Keep-Alive header value expected (max_=None: unlimited)."""
    if max_ is None:
        return "timeout=%d" % timeout
    return "timeout=%d, max=%d" % (timeout, max_)


def assert_keepalive(resp, timeout, max_, request=None):
    """A persistent response advertising exactly timeout/max once."""
    what = resp.describe(request)
    values = resp.get_all("Keep-Alive")
    assert values, "expected 'Keep-Alive: %s', got none\n%s" % (
        keepalive_value(timeout, max_), what)
    assert len(values) == 1, "expected exactly one Keep-Alive header\n%s" % what
    assert values[0] == keepalive_value(timeout, max_), (
        "expected 'Keep-Alive: %s'\n%s" % (keepalive_value(timeout, max_), what))
    conn = resp.tokens("Connection")
    assert "keep-alive" in conn, (
        "a persistent response must say 'Connection: Keep-Alive'\n%s" % what)
    assert "close" not in conn, "persistent response says close\n%s" % what


def assert_closing_without_keepalive(resp, request=None):
    """A response announcing the close, without any Keep-Alive header."""
    what = resp.describe(request)
    assert not resp.has("Keep-Alive"), (
        "a response that closes the connection must not carry Keep-Alive\n%s"
        % what)
    conn = resp.tokens("Connection")
    assert "close" in conn, "expected 'Connection: close'\n%s" % what
    assert "keep-alive" not in conn, (
        "closing response says Connection: Keep-Alive\n%s" % what)


def assert_closed_soon(conn, request=None, resp=None, within=1.0):
    elapsed = conn.wait_for_close(within)
    assert elapsed is not None, (
        "server did not close the connection within %.1fs after a closing "
        "response\n%s" % (within, resp.describe(request) if resp else
                          "request bytes: %r" % (request,)))


def parse_keepalive(value):
    """'timeout=5, max=100' -> {'timeout': 5, 'max': 100}"""
    out = {}
    for part in value.split(","):
        m = re.match(r"^\s*([A-Za-z]+)=(\d+)\s*$", part)
        assert m, "malformed Keep-Alive value %r" % value
        out[m.group(1).lower()] = int(m.group(2))
    return out


# -- idle close measurement -------------------------------------------------
class IdleResult:
    def __init__(self, request, response, elapsed, limit):
        self.request = request
        self.response = response
        self.elapsed = elapsed          # None: still open after ``limit`` s
        self.limit = limit

    def describe(self):
        return "%s\nserver closed the idle connection after: %s" % (
            self.response.describe(self.request),
            "%.3fs" % self.elapsed if self.elapsed is not None
            else "not within %.1fs" % self.limit)


def measure_idle_close(port, request, limit, pre_requests=()):
    """Send ``pre_requests`` then ``request`` on one connection, read the
    responses, and time how long the server keeps the idle connection."""
    with RawConnection("127.0.0.1", port) as c:
        for pre in pre_requests:
            c.request(pre)
        resp = c.request(request)
        elapsed = c.wait_for_close(limit)
    return IdleResult(request, resp, elapsed, limit)


def assert_idle_close_after(result, seconds):
    """EOF not before ``seconds`` (minus slack), and within seconds + 1.5."""
    print("idle connection closed after %s (expected %.1fs): %r" % (
        "%.3fs" % result.elapsed if result.elapsed is not None else "never",
        seconds, result.request))
    assert result.elapsed is not None, (
        "connection still open %.1fs after the response, expected the server "
        "to close it after %.1fs\n%s" % (result.limit, seconds,
                                         result.describe()))
    assert result.elapsed >= seconds - EARLY_SLACK, (
        "server closed the idle connection too early (expected %.1fs)\n%s"
        % (seconds, result.describe()))
    assert result.elapsed <= seconds + LATE_SLACK, (
        "server held the idle connection too long (expected %.1fs)\n%s"
        % (seconds, result.describe()))


class ParallelMeasurements:
    """Run independent idle measurements concurrently (one connection each)
    so that the timing tests of one file cost max(T), not sum(T)."""

    def __init__(self, jobs):
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(jobs)))
        self._futures = {name: self._pool.submit(fn, *args)
                         for name, (fn, args) in jobs.items()}

    def result(self, name, timeout=30):
        return self._futures[name].result(timeout=timeout)

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def assert_persistent_without_keepalive(resp, request=None):
    """A response that keeps the connection but carries no Keep-Alive
    header (KeepAliveHeader OnRequest/Never)."""
    what = resp.describe(request)
    assert not resp.has("Keep-Alive"), (
        "expected no Keep-Alive header on this response\n%s" % what)
    assert "close" not in resp.tokens("Connection"), (
        "expected a persistent response, got Connection: close\n%s" % what)


def assert_still_open(conn, request=None, resp=None, wait=0.1):
    """The server did not close the connection within ``wait`` s."""
    elapsed = conn.wait_for_close(wait)
    assert elapsed is None, (
        "server closed the connection %.3fs after a response that said it "
        "would stay open\n%s" % (elapsed, resp.describe(request) if resp
                                 else "request bytes: %r" % (request,)))
