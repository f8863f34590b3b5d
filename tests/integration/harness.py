"""Shared helpers of the integration tests: server lifecycle for fixtures,
assertions about keep-alive responses, and parallel idle-time measurement."""

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from httpd import REPO_ROOT, HttpdStartError
from rawhttp import RawConnection

ALL_MPMS = ("prefork", "worker", "event")
DEFAULT_MODULE = REPO_ROOT / "build" / "mod_keepalive.so"

# Idle-close timing tolerance: the server's idle clock starts when it has
# written the response, a little before we have read it, so EOF may come
# slightly "early" from our point of view; and it must come soon after T.
EARLY_SLACK = 0.1
LATE_SLACK = 1.5

_running = []


# -- configuration -----------------------------------------------------------
def selected_mpms():
    raw = os.environ.get("MPMS", "")
    if not raw.strip():
        return list(ALL_MPMS)
    mpms = [m.strip() for m in raw.split(",") if m.strip()]
    bad = [m for m in mpms if m not in ALL_MPMS]
    if bad:
        raise pytest.UsageError("MPMS: unknown MPM(s) %s (known: %s)"
                                % (", ".join(bad), ", ".join(ALL_MPMS)))
    return mpms


def module_path_setting():
    """The module to test, or None when KEEPALIVE_MODULE=none."""
    raw = os.environ.get("KEEPALIVE_MODULE")
    if raw is None:
        return DEFAULT_MODULE
    if raw.strip().lower() in ("", "none"):
        return None
    return Path(raw).resolve()


# -- server lifecycle --------------------------------------------------------
def serve(server):
    """Generator for server fixtures: start, yield, stop and check.

    Stopping fails the test if any httpd process is left over; afterwards
    the test fails if a child crashed or mod_keepalive logged at level
    error or worse.  The server directory is kept when something failed.
    """
    try:
        server.start()
    except HttpdStartError as e:
        pytest.fail("%s\n(server directory kept: %s)" % (e, server.dir),
                    pytrace=False)
    _running.append(server)
    try:
        yield server
    finally:
        _running.remove(server)
        problems = server.stop()        # raises if processes are left over
        if not problems:
            server.cleanup()
    if problems:
        pytest.fail("%r error log shows problems (directory kept):\n%s"
                    % (server, "\n".join(problems)), pytrace=False)


def new_problems_of_running_servers():
    out = []
    for server in list(_running):
        out.extend("%r: %s" % (server, line)
                   for line in server.new_log_problems())
    return out


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


# -- reusable configuration pieces -------------------------------------------
# /stream answers with a body of unknown length (the handler flushes before
# it is done): chunked for HTTP/1.1, "read to EOF" and close for HTTP/1.0.
STREAM_LUA = b"""\
function handle(r)
  r.content_type = "text/plain"
  r:puts("part one\\n")
  r:flush()
  r:puts("part two\\n")
  return apache2.OK
end
"""
STREAM_FILES = {"scripts/stream.lua": STREAM_LUA}
# mod_ratelimit passes the header block on in pieces of 204 bytes after
# HTTP_HEADER wrote it; X-Pad (the query string) moves the Keep-Alive line
# across the pieces' boundaries.
RATE_LIMITED_CONFIG = """\
<Location /rate-limited>
    SetOutputFilter RATE_LIMIT
    SetEnv rate-limit 1
    Header set X-Pad "expr=%{QUERY_STRING}"
</Location>
"""

STREAM_CONFIG = 'LuaMapHandler "^/stream$" "@DIR@/scripts/stream.lua" handle\n'

# /hdr/ has a forged Keep-Alive header set by mod_headers on every response.
FORGED_VALUE = "timeout=999, max=999"
FORGED_CONFIG = """\
<Location /hdr>
    Header always set Keep-Alive "%s"
</Location>
""" % FORGED_VALUE


# -- helpers shared by the directive and rule tests ---------------------------
def cgi_module(mpm):
    """The CGI module Debian enables for ``mpm`` (a2enmod cgi picks cgid
    under the threaded MPMs)."""
    return "cgi" if mpm == "prefork" else "cgid"


def cgi_directory_config(directory="@DOCROOT@/cgi"):
    return """\
<Directory "%s">
    Options +ExecCGI
    SetHandler cgi-script
</Directory>
""" % directory


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


def configtest_mpm():
    """The one MPM the configtest-only tests run under: event if selected."""
    mpms = selected_mpms()
    return "event" if "event" in mpms else mpms[0]
