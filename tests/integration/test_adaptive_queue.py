"""The load-adaptive mode's accept-queue input (KeepAliveAdaptiveQueue On,
the default), on a pool of two workers under prefork and worker, where an
idle keep-alive connection holds its worker and a client that finds none
free waits in the listening socket's accept queue.

KeepAliveTimeout 3, KeepAliveAdaptiveThresholds 50% 75% and a floor of
1 s. With the queue known, worker occupancy only shrinks the timeout (to
the floor at 75%); a response closes when a client waits:

    1 of 2 workers held (50%)        Keep-Alive: timeout=3
    2 of 2 held (100%), none waits   Keep-Alive: timeout=1 (the floor)
    a client waits in the queue      Connection: close (load-shedding)

Under occupancy alone (test_adaptive.py, KeepAliveAdaptiveQueue Off) the
second response would already close. No status request is made while
both workers are held: it would itself have to wait for a worker.

Under event idle connections hold no worker and its listener accepts
while it can, so only the gauges are checked there.
"""

import re
import time

import pytest

from tests.harness.assertions import (EARLY_SLACK, LATE_SLACK,
                                      assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive)
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

TIMEOUT = 3
FLOOR = 1
STATUS = "/keepalive-status"
CLOSE = [("Connection", "close")]
# Each process samples at most every 10 ms: a response right after another
# of the same process may see the pool as that one did.
SAMPLES_EXPIRE = 0.05

TWO_WORKERS = {
    "prefork": """\
        StartServers 2
        MinSpareServers 2
        MaxSpareServers 2
        ServerLimit 2
        MaxRequestWorkers 2
        """,
    "worker": """\
        StartServers 1
        ServerLimit 1
        ThreadLimit 2
        ThreadsPerChild 2
        MinSpareThreads 1
        MaxSpareThreads 2
        MaxRequestWorkers 2
        """,
}
TWO_WORKERS["event"] = TWO_WORKERS["worker"]

CONFIG = """\
KeepAliveAdaptive On
KeepAliveAdaptiveThresholds 50%% 75%%
KeepAliveAdaptiveFloor %d
KeepAliveAdaptiveInterval 10ms
<Location "%s">
    SetHandler keepalive-status
</Location>
""" % (FLOOR, STATUS)


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", str(TIMEOUT), "100"),
        extra_config=TWO_WORKERS[mpm] + CONFIG, log_level="info",
        name="adaptive-queue"))


@pytest.fixture
def holding_mpm(mpm):
    if mpm == "event":
        pytest.skip("under event an idle connection holds no worker and the "
                    "listener accepts while it can: no client waits")
    return mpm


# -- helpers -----------------------------------------------------------------
def scrape(server):
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(build_request(path=STATUS, headers=CLOSE))
    assert resp.status == 200, resp.describe()
    return resp.body.decode()


def gauge(text, line_start):
    m = re.search(r"^%s (\S+)$" % re.escape(line_start), text, re.M)
    assert m, "no %s in\n%s" % (line_start, text)
    return float(m.group(1))


def shed_count(server):
    return int(gauge(scrape(server),
                     'keepalive_connections_closed_total{reason="load-shedding"}'))


def wait_idle_pool(server, timeout=8.0):
    """Until no client waits and the remembered wait has faded (held for
    the longest KeepAliveTimeout, fading over as long again): the shedding
    pressure reads 0 again."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(server)
        if gauge(text, "keepalive_pressure_shedding_ratio") == 0:
            return
        assert time.monotonic() < deadline, text
        time.sleep(0.2)


def open_kept(server):
    c = RawConnection("127.0.0.1", server.port)
    return c, c.request(build_request())


def hold_two(server):
    """Two kept connections: the first at 50% occupancy (the full timeout),
    the second at 100% (its response is returned unchecked)."""
    c1, r1 = open_kept(server)
    assert_keepalive(r1, TIMEOUT, 100)
    time.sleep(SAMPLES_EXPIRE)
    c2, r2 = open_kept(server)
    return (c1, r1), (c2, r2)


# -- tests -------------------------------------------------------------------
def test_gauges_show_the_queue_under_every_mpm(server):
    text = scrape(server)
    assert gauge(text, "keepalive_accept_queue_clients") == 0
    assert gauge(text, 'keepalive_pressure_ratio{input="accept_queue"}') == 0
    # The scrape's own worker is busy: under event, half its process.
    assert gauge(text, "keepalive_pressure_shedding_ratio") <= 0.5
    assert "reads the accept queues of 1 listener(s)" in server.error_log()


def test_empty_queue_holds_connections_above_the_occupancy_threshold(
        server, holding_mpm):
    wait_idle_pool(server)
    before = shed_count(server)
    time.sleep(SAMPLES_EXPIRE)
    (c1, _), (c2, r2) = hold_two(server)
    try:
        # Both workers held, 100% occupancy, nobody waiting: kept, with
        # the floor as the promise.
        assert_keepalive(r2, FLOOR, 100)
        time.sleep(SAMPLES_EXPIRE)
        assert_keepalive(c1.request(build_request()), FLOOR, 99)
        time.sleep(SAMPLES_EXPIRE)
        assert_keepalive(c2.request(build_request()), FLOOR, 99)
    finally:
        c1.close()
        c2.close()
    assert shed_count(server) == before


def test_advertised_timeouts_are_honoured_while_a_client_waits(
        server, holding_mpm):
    """Nothing closes an idle connection before the timeout its response
    advertised, even with a client waiting; that client waits at most the
    floor for a worker."""
    wait_idle_pool(server)
    time.sleep(SAMPLES_EXPIRE)
    (c1, _), (c2, r2) = hold_two(server)
    promised_at = time.monotonic()
    assert_keepalive(r2, FLOOR, 100)
    waiting = RawConnection("127.0.0.1", server.port, timeout=10)
    try:
        waiting.send(build_request(headers=CLOSE))
        resp = waiting.read_response(timeout=FLOOR + LATE_SLACK + 1)
        served_after = time.monotonic() - promised_at
        assert resp.status == 200, resp.describe()
        assert FLOOR - EARLY_SLACK <= served_after <= FLOOR + LATE_SLACK, (
            "the waiting client was served %.2f s after the floor (%d s) "
            "was promised" % (served_after, FLOOR))
        # The connection promised the full timeout is still open.
        assert not c1.is_closed(timeout=0.05)
        closed = c1.wait_for_close(TIMEOUT + LATE_SLACK)
        assert closed is not None
        assert time.monotonic() - promised_at >= TIMEOUT - EARLY_SLACK
    finally:
        waiting.close()
        c1.close()
        c2.close()


def test_a_waiting_client_makes_the_next_response_close(server, holding_mpm):
    wait_idle_pool(server)
    before = shed_count(server)
    time.sleep(SAMPLES_EXPIRE)
    (c1, _), (c2, _) = hold_two(server)
    waiting = RawConnection("127.0.0.1", server.port, timeout=10)
    try:
        waiting.send(build_request(headers=CLOSE))
        time.sleep(0.1)         # in the accept queue, no worker free; samples expire
        sent = time.monotonic()
        request = build_request()
        resp = c1.request(request)
        assert_closing_without_keepalive(resp, request)
        assert_closed_soon(c1, request, resp)
        c1.close()              # as a client does after Connection: close,
        # which ends the worker's lingering close: it takes the waiting
        # client at once, long before the other held connection's 1 s idle
        # timeout would free one.
        served = waiting.read_response(timeout=FLOOR + LATE_SLACK)
        assert served.status == 200, served.describe()
        assert time.monotonic() - sent < FLOOR - 0.3
        assert not c2.is_closed(timeout=0.05)
    finally:
        waiting.close()
        c1.close()
        c2.close()
    deadline = time.monotonic() + 3
    while shed_count(server) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shed_count(server) == before + 1
