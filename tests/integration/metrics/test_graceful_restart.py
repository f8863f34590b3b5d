"""The counters survive a graceful restart (event only) and keep counting;
the idle connection the restart closes, long before its advertised
timeout, is counted as early-close-stopping."""

import os
import re
import signal
import time

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.metrics import (CLOSE, WAIT, Expect, closes,
                                   fresh_scrape, fresh_scrape_until,
                                   mismatches, request, scope_values,
                                   subtract)
from tests.harness.servers import serve


# -- graceful restart -----------------------------------------------------
# r.test sets a mod_keepalive directive of its own so that it has a series
# of its own even where vhosts without one are lumped together (the
# per-vhost tests above cover those): this test is about restarts.
RESTART_CONFIG = r"""
<VirtualHost 127.0.0.1:@PORT@>
    ServerName r.test
    KeepAliveTimeout 10
    KeepAliveMaxRequests 100
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName metrics.test
    <Location /ka-status>
        SetHandler keepalive-status
    </Location>
</VirtualHost>
"""


@pytest.fixture(scope="module")
def restart_server(mpm, module_path):
    if mpm != "event":
        pytest.skip("graceful restart is checked under event only")
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"),
        extra_config=RESTART_CONFIG, log_level="notice keepalive:info",
        name="metrics-restart"))


def test_counters_survive_a_graceful_restart(restart_server):
    server = restart_server
    port, vhost = server.port, "r.test:%d" % server.port
    closes(port, "r.test", "/", "/", ("/", "HTTP/1.1", CLOSE))
    idle, _ = request(port, "r.test", "/")          # kept, left idle
    with idle:
        deadline = time.monotonic() + WAIT
        while scope_values(fresh_scrape(port), vhost).get("count") != 1:
            assert time.monotonic() < deadline, "first connection not counted"
            time.sleep(0.1)
        before = fresh_scrape(port)
        ready = len(re.findall("resuming normal operations",
                               server.error_log()))
        os.kill(server.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 15
        while len(re.findall("resuming normal operations",
                             server.error_log())) <= ready:
            assert time.monotonic() < deadline, (
                "no restart within 15 s\n" + server.error_log())
            time.sleep(0.05)
        # The idle connection is closed by the stopping old generation.
        assert idle.wait_for_close(WAIT) is not None, (
            "idle kept connection not closed by the graceful restart")
    after = fresh_scrape_until(port, vhost, 2)
    lower = {(n, dict(l).get("vhost"), dict(l).get("decision"),
              dict(l).get("reason"), dict(l).get("le")): (before[(n, l)],
                                                          after.get((n, l)))
             for (n, l) in before
             # counters and histograms; gauges (the drain's) may go down
             if n.endswith(("_total", "_bucket", "_sum", "_count"))
             and (after.get((n, l)) is None or after[(n, l)] < before[(n, l)])}
    assert not lower, "series lost or lower after the restart: %r" % lower
    diff = mismatches(
        Expect().ended(1, "early-close-stopping").values(
            scope_values(after, vhost).keys()),
        subtract(scope_values(after, vhost), scope_values(before, vhost)))
    assert not diff, "r.test after the restart: %s" % diff
    # Closed long before the 10 s it was promised: an early close, logged.
    assert re.search(r"\[keepalive:info\] .*mod_keepalive: idle connection "
                     r"from 127\.0\.0\.1 closed after \d+\.\d s, before the "
                     r"10 s its last response advertised \(vhost %s\): the "
                     r"server was stopping" % re.escape(vhost),
                     server.error_log()), server.error_log()
    # And they keep counting.
    closes(port, "r.test", "/", "/", ("/", "HTTP/1.1", CLOSE))
    later = fresh_scrape_until(port, vhost, 3)
    diff = mismatches(
        Expect().connection("kkc", "client-close").values(
            scope_values(later, vhost).keys()),
        subtract(scope_values(later, vhost), scope_values(after, vhost)))
    assert not diff, "r.test, traffic after the restart: %s" % diff
    assert scope_values(later)["requests"] >= scope_values(after)[
        "requests"] + 3
