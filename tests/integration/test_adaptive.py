"""Load-adaptive keep-alive (KeepAliveAdaptive) on a pool of four workers,
deciding from worker occupancy alone (KeepAliveAdaptiveQueue Off, also what
the mode does where the accept queue cannot be read; test_adaptive_queue.py
covers the accept queue).

With KeepAliveAdaptiveThresholds 30% 75%, KeepAliveTimeout 5 and
KeepAliveAdaptiveFloor 1, the occupancy a response sees (its own worker
included) decides:

    1 of 4 busy (25%)   full timeout:   Keep-Alive: timeout=5
    2 of 4 busy (50%)   shrunk:         5 - 4 * (500 - 300) / (750 - 300)
                                        = 3.22 s, advertised timeout=3
    3 of 4 busy (75%)   load shedding:  Connection: close

What occupies a worker differs by MPM: under prefork and worker an idle
keep-alive connection holds its worker while it waits for the next request;
under event it waits in the listener and holds none, so only requests in
progress (here /slow, a mod_lua handler that sleeps) fill the pool.

Every step first waits, through mod_status, until the scoreboard shows the
state the step needs (the held connections settled, nothing else busy), so
that the 10 ms occupancy samples see exactly that state.
"""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.assertions import (EARLY_SLACK, LATE_SLACK,
                                      assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive)
from tests.harness.configs import FOUR_WORKERS, SLOW_MS_FILES
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

WORKERS = 4
TIMEOUT = 5.0
SHRUNK = TIMEOUT - (TIMEOUT - 1.0) * (500 - 300) / (750 - 300)   # 3.22 s
SLOW_MS = 2000


CONFIG = """\
KeepAliveAdaptive On
KeepAliveAdaptiveQueue Off
KeepAliveAdaptiveThresholds 30% 75%
KeepAliveAdaptiveFloor 1
KeepAliveAdaptiveInterval 10ms
LuaMapHandler "^/slow$" "@DIR@/scripts/slow.lua" handle
<Location "/keepalive-status">
    SetHandler keepalive-status
</Location>
<Location "/server-status">
    SetHandler server-status
</Location>
"""

CLOSE = [("Connection", "close")]
BUSY_STATES = set("SRWDCLGI")     # mod_status letters of occupied workers


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "%d" % TIMEOUT, "100"),
        extra_config=FOUR_WORKERS[mpm] + CONFIG,
        extra_modules=("lua", "status"),
        files=SLOW_MS_FILES, name="adaptive"))


# -- helpers -----------------------------------------------------------------
def holds_workers_while_idle(mpm):
    return mpm in ("prefork", "worker")


def one_shot(server, path):
    """A request on a connection of its own, with "Connection: close" so
    that it is never counted as load shedding."""
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(build_request(path=path, headers=CLOSE))
        c.wait_for_close(2.0)
    assert resp.status == 200, resp.describe()
    return resp


def scoreboard(server):
    text = one_shot(server, "/server-status?auto").body.decode()
    m = re.search(r"^Scoreboard: (\S+)$", text, re.M)
    assert m, text
    return m.group(1)


def settle(server, keepalive, busy, timeout=5.0):
    """Wait until the scoreboard shows ``keepalive`` workers waiting on an
    idle connection and ``busy`` others (besides the status request)."""
    deadline = time.monotonic() + timeout
    while True:
        board = scoreboard(server)
        k = board.count("K")
        b = sum(1 for ch in board if ch in BUSY_STATES) - 1
        if k == keepalive and b == busy:
            break
        assert time.monotonic() < deadline, (
            "scoreboard never settled at %d idle keep-alive and %d busy "
            "workers: %r" % (keepalive, busy, board))
        time.sleep(0.02)
    # The status request's own worker has just finished; let it go back to
    # the pool and let the 10 ms samples expire.
    time.sleep(0.05)


def shed_count(server):
    text = one_shot(server, "/keepalive-status").body.decode()
    m = re.search(r'^keepalive_connections_closed_total\{reason="load-shedding"\}'
                  r" (\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def wait_shed_count(server, at_least, timeout=3.0):
    """Load shedding is counted when the connection ends, just after the
    response: poll a little."""
    deadline = time.monotonic() + timeout
    while True:
        n = shed_count(server)
        if n >= at_least or time.monotonic() >= deadline:
            return n
        time.sleep(0.05)


def open_kept(server, path="/index.html"):
    """A new connection and its first response (HTTP/1.1, no Connection)."""
    c = RawConnection("127.0.0.1", server.port)
    return c, c.request(build_request(path=path))


def start_slow(server, ms=SLOW_MS):
    c = RawConnection("127.0.0.1", server.port, timeout=ms / 1000.0 + 10)
    c.send(build_request(path="/slow?%d" % ms, headers=CLOSE))
    return c


def finish_slow(conns):
    for c in conns:
        resp = c.read_response()
        assert resp.status == 200, resp.describe()
        c.close()


def assert_shed(server, conn, resp, request=None):
    """A load-shedding response: Connection: close, no Keep-Alive, and the
    server closes the connection right after it."""
    assert_closing_without_keepalive(resp, request)
    assert_closed_soon(conn, request, resp)
    conn.close()


def close_all(conns):
    for c in conns:
        c.close()


# -- tests -------------------------------------------------------------------
def test_idle_connections_shrink_then_shed_under_prefork_and_worker(
        server, mpm):
    """Idle keep-alive connections fill the pool under prefork and worker:
    the timeout shrinks, then responses close; under event they hold no
    worker and change nothing."""
    settle(server, keepalive=0, busy=0)
    before = shed_count(server)
    held = []
    try:
        c1, r1 = open_kept(server)
        held.append(c1)
        assert_keepalive(r1, int(TIMEOUT), 100)

        idle = 1 if holds_workers_while_idle(mpm) else 0
        settle(server, keepalive=idle, busy=0)
        c2, r2 = open_kept(server)
        held.append(c2)
        if not holds_workers_while_idle(mpm):
            # event: one busy worker (this response's) whatever is held
            assert_keepalive(r2, int(TIMEOUT), 100)
            settle(server, keepalive=0, busy=0)
            c3, r3 = open_kept(server)
            held.append(c3)
            assert_keepalive(r3, int(TIMEOUT), 100)
            settle(server, keepalive=0, busy=0)
            assert shed_count(server) == before
            return

        assert_keepalive(r2, int(SHRUNK), 100)
        settle(server, keepalive=2, busy=0)
        # Two idle connections + this response's worker = 75%: every new
        # connection is shed while they are held.
        for _ in range(3):
            c, r = open_kept(server)
            assert_shed(server, c, r)
            settle(server, keepalive=2, busy=0)
        assert wait_shed_count(server, before + 3) >= before + 3
        settle(server, keepalive=2, busy=0)

        # A held connection's next response sees itself and the other one:
        # 50%, the shrunk timeout again, one request less.
        assert_keepalive(c1.request(build_request()), int(SHRUNK), 99)
    finally:
        close_all(held)


def test_busy_workers_shed_new_and_held_connections(server, mpm):
    """Requests in progress occupy workers under every MPM: with two slow
    requests running, new connections and the next response of a held one
    say "Connection: close", counted as load shedding."""
    settle(server, keepalive=0, busy=0)
    before = shed_count(server)
    c0, r0 = open_kept(server)
    slow = []
    try:
        assert_keepalive(r0, int(TIMEOUT), 100)
        idle = 1 if holds_workers_while_idle(mpm) else 0
        settle(server, keepalive=idle, busy=0)
        slow = [start_slow(server), start_slow(server)]
        settle(server, keepalive=idle, busy=2)

        # prefork/worker: idle + 2 slow + self = 100%; event: 2 + self = 75%
        c, r = open_kept(server)
        assert_shed(server, c, r)
        settle(server, keepalive=idle, busy=2)

        # The held connection is shed at its next response boundary, not
        # while it waits: 2 slow + its own worker = 75% under every MPM.
        request = build_request()
        resp = c0.request(request)
        assert resp.status == 200, resp.describe(request)
        assert_shed(server, c0, resp, request)
        assert wait_shed_count(server, before + 2) >= before + 2
    finally:
        c0.close()
        finish_slow(slow)


def test_recovers_when_load_falls(server, mpm):
    """Once the held connections and the slow requests are gone, responses
    are persistent again with the full timeout."""
    settle(server, keepalive=0, busy=0)
    held, slow = [], []
    try:
        for _ in range(2):
            c, r = open_kept(server)
            held.append(c)
            assert r.status == 200
        idle = 2 if holds_workers_while_idle(mpm) else 0
        settle(server, keepalive=idle, busy=0)
        if not holds_workers_while_idle(mpm):
            slow = [start_slow(server, 1000), start_slow(server, 1000)]
            settle(server, keepalive=0, busy=2)
        c, r = open_kept(server)
        assert_shed(server, c, r)

        close_all(held)
        held = []
        finish_slow(slow)
        slow = []
        settle(server, keepalive=0, busy=0)

        c, r = open_kept(server)
        held.append(c)
        assert_keepalive(r, int(TIMEOUT), 100)
        assert_keepalive(c.request(build_request()), int(TIMEOUT), 99)
    finally:
        close_all(held)
        finish_slow(slow)


def test_never_closes_an_idle_connection_before_its_advertised_timeout(
        server, mpm):
    """Every held connection stays open at least as long as its last
    response advertised: the full timeout, and a shrunk one. Prefork and
    worker enforce the shrunk value itself (3.22 s); event waits its
    virtual host's 5 s, never less than advertised."""
    settle(server, keepalive=0, busy=0)
    held = []       # (connection, advertised s, enforced s)
    slow = []
    try:
        c1, r1 = open_kept(server)
        assert_keepalive(r1, int(TIMEOUT), 100)
        held.append((c1, int(TIMEOUT), TIMEOUT))

        if holds_workers_while_idle(mpm):
            settle(server, keepalive=1, busy=0)
            enforced = SHRUNK
        else:
            slow = [start_slow(server, 1000)]
            settle(server, keepalive=0, busy=1)
            enforced = TIMEOUT
        c2, r2 = open_kept(server)
        assert_keepalive(r2, int(SHRUNK), 100)
        held.append((c2, int(SHRUNK), enforced))
        finish_slow(slow)
        slow = []

        limit = TIMEOUT + LATE_SLACK + 1.0
        with ThreadPoolExecutor(max_workers=len(held)) as pool:
            elapsed = list(pool.map(lambda h: h[0].wait_for_close(limit), held))
        report = ", ".join(
            "advertised timeout=%d, enforced %.2f s: EOF after %s"
            % (adv, enf, "%.3f s" % e if e is not None else "never")
            for (_, adv, enf), e in zip(held, elapsed))
        print(report)
        for (_, advertised, enf), e in zip(held, elapsed):
            assert e is not None, "connection never closed: " + report
            assert e >= advertised - EARLY_SLACK, (
                "closed before the advertised timeout: " + report)
            assert e >= enf - EARLY_SLACK, (
                "closed before the enforced timeout: " + report)
            assert e <= enf + LATE_SLACK, "held too long: " + report
    finally:
        close_all(c for c, _, _ in held)
        finish_slow(slow)


def test_start_up_says_it_decides_from_occupancy(server):
    assert ("mod_keepalive: KeepAliveAdaptiveQueue Off: the adaptive mode "
            "closes on worker occupancy") in server.error_log()
