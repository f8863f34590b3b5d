"""Behind a real balancer: Debian's haproxy in TCP mode (an L4 balancer
places a connection once; its requests never move) in front of two httpd.
The second backend is enabled through HAProxy's runtime API while keep-alive
clients are connected to the first. With KeepAliveMaxLifetime, the clients
that were connected before it was added reach it within about a lifetime;
with core's keep-alive and no request budget, none ever does (the control,
which shows the test can fail). bench/fleet.py measures the same at scale.
"""

import threading
import time

import pytest

from tests.harness.haproxy import Haproxy, tcp_balancer_config
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import ConnectionClosed, RawConnection, build_request
from tests.harness.servers import serve

LIFETIME = 1.0
CLIENTS = 4


def backend(mpm, module_path, name, lifetime):
    config = "Header always set X-Backend %s\n" % name
    if lifetime:
        config += "KeepAliveMaxLifetime %dms\n" % int(LIFETIME * 1000)
    # MaxKeepAliveRequests 0: only the lifetime ends a busy connection.
    return HttpdServer(mpm, module_path if lifetime else None, keepalive=("On", "5", "0"),
                       extra_config=config, name="haproxy-" + name)


@pytest.fixture(params=["lifetime", "core"])
def fleet(request, mpm, module_path):
    lifetime = request.param == "lifetime"
    servers = [backend(mpm, module_path, "b1", lifetime), backend(mpm, module_path, "b2", lifetime)]
    gens = [serve(s) for s in servers]
    started = [next(g) for g in gens]
    proxy = Haproxy(tcp_balancer_config([s.port for s in started], disabled=(2,)), "test")
    try:
        proxy.start()
        yield request.param, proxy
    finally:
        proxy.stop()
        proxy.cleanup()
        for g in gens:
            for _ in g:  # stops the server and checks its log
                pass


def client(port, served, stop):
    """Steady requests (every 50 ms) on one keep-alive connection through
    the balancer, reconnecting when the server closes it; records which
    backend served each request."""
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = RawConnection("127.0.0.1", port, timeout=10)
        try:
            resp = conn.request(build_request(host="fleet.test"))
        except (ConnectionClosed, OSError):
            conn.close()
            conn = None
            continue
        served.append((time.monotonic(), resp.get("X-Backend")))
        if resp.get("Keep-Alive") is None and "close" in (resp.get("Connection") or "").lower():
            conn.close()
            conn = None
        stop.wait(0.05)
    if conn:
        conn.close()


def test_a_backend_added_behind_haproxy_gets_the_clients_connected_before(fleet):
    kind, proxy = fleet
    stop = threading.Event()
    served = [[] for _ in range(CLIENTS)]
    threads = [threading.Thread(target=client, args=(proxy.port, served[i], stop)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # every client connected, to b1 (b2 is disabled)
        before = [list(s) for s in served]
        assert all(s and all(b == "b1" for _, b in s) for s in before), before
        answer = proxy.runtime("enable server be/b2")
        assert answer.strip() == "", answer
        added = time.monotonic()
        # 1.1 x the lifetime, and as long again for the clients to reach b2.
        time.sleep(2 * 1.1 * LIFETIME + 0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    moved = sum(1 for s in served if any(at > added and b == "b2" for at, b in s))
    after_add = [b for s in served for at, b in s if at > added]
    if kind == "lifetime":
        assert moved >= 1 and after_add.count("b2") > 0, (
            "no client connected before b2 was enabled reached it within 2 lifetimes: %s"
            % [sorted(set(b for _, b in s)) for s in served])
    else:
        assert moved == 0 and "b2" not in after_add, (
            "core without a lifetime or request budget moved a client: the control is wrong")
