"""Exact counter deltas: every way a connection ends is counted under its
reason, error responses count as error-status, each vhost has its own
series and the total is their sum (see tests/harness/metrics.py for how
the deltas are made exact)."""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.harness.metrics import (CLOSE, KA, WAIT, Expect, check_deltas,
                                   closes, mismatches, request, scrape_until)
from tests.harness.rawhttp import RawConnection, build_request


# -- exact deltas ---------------------------------------------------------
def test_exact_deltas_for_every_way_a_connection_ends(server, scraper):
    host, port = "traffic.test", server.port
    before = scraper.scrape()
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        # idle-timeout: kept, then left idle past KeepAliveTimeout 2.
        def idle():
            c, _ = request(port, host, "/")
            with c:
                return c.wait_for_close(WAIT)
        idle_job = pool.submit(idle)

        # lifetime-reached: /life has KeepAliveMaxLifetime 1.
        def lifetime():
            c, (first,) = request(port, host, "/life/")
            with c:
                time.sleep(1.3)
                second = c.request(build_request(path="/life/", host=host))
                return first, second, c.is_closed(WAIT)
        life_job = pool.submit(lifetime)

        # client-close after three kept requests.
        closes(port, host, "/", "/", "/", ("/", "HTTP/1.1", CLOSE))
        # http10-no-optin
        closes(port, host, ("/", "HTTP/1.0", ()))
        # budget-reached: /budget has KeepAliveMaxRequests 2.
        closes(port, host, "/budget/", "/budget/", "/budget/")
        # disabled-by-condition, disabled (KeepAliveIdleTimeout 0),
        # disabled-by-env (nokeepalive), response-close.
        for path in ("/cond/", "/off/", "/nokeep/", "/respclose/"):
            closes(port, host, path)
        # undelimited-body: HTTP/1.0 keep-alive, body of unknown length.
        (resp,) = closes(port, host, ("/stream", "HTTP/1.0", KA))
        assert not resp.has("Content-Length"), resp.describe()
        # client-gone: kept, then the client closes the idle connection.
        request(port, host, "/", close=True)

        first, second, life_closed = life_job.result(timeout=10)
        idle_closed = idle_job.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert "close" not in first.tokens("Connection"), first.describe()
    assert "close" in second.tokens("Connection"), second.describe()
    assert life_closed, "lifetime: server did not close the connection"
    assert idle_closed is not None, "idle connection was never closed"

    traffic = (Expect()
               .connection("kkkc", "client-close")
               .connection("c", "http10-no-optin")
               .connection("kkc", "budget-reached")
               .connection("c", "disabled-by-condition")
               .connection("c", "disabled")
               .connection("c", "disabled-by-env")
               .connection("c", "response-close")
               .connection("c", "undelimited-body")
               .connection("k", "client-gone")
               .connection("kc", "lifetime-reached")
               .connection("k", "idle-timeout"))
    vhost = "traffic.test:%d" % port
    after = scrape_until(scraper, vhost, before.scope(vhost).get("count", 0)
                         + len(traffic.connections))
    check_deltas(server, before, after, {host: traffic})
    for reason in ("load-shedding", "server-stopping", "marked-close"):
        assert after.scope().get("closed:" + reason) == before.scope().get(
            "closed:" + reason), reason


def test_error_responses_count_as_error_status(server, scraper):
    """A 400 for a malformed request line, a 400 for an HTTP/1.1 request
    without Host (both go to the first vhost, traffic.test) and a 500 from
    a handler: each closes with reason error-status. (Core marks these
    connections AP_CONN_CLOSE before the error response is sent; that must
    not turn them into marked-close.)"""
    port = server.port
    before = scraper.scrape()
    for raw in (b"GARBAGE\r\n\r\n",
                b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
                build_request(path="/fail", host="traffic.test")):
        with RawConnection("127.0.0.1", port) as c:
            resp = c.request(raw)
            assert resp.status in (400, 500), resp.describe(raw)
            assert "close" in resp.tokens("Connection"), resp.describe(raw)
            assert c.is_closed(WAIT), resp.describe(raw)
    vhost = "traffic.test:%d" % port
    after = scrape_until(scraper, vhost, before.scope(vhost).get("count", 0)
                         + 3)
    check_deltas(server, before, after, {
        "traffic.test": Expect().connection("c", "error-status")
                                .connection("c", "error-status")
                                .connection("c", "error-status")})


# -- per vhost ------------------------------------------------------------
def test_each_vhost_has_its_own_series_and_the_total_is_their_sum(
        server, scraper):
    port = server.port
    before = scraper.scrape()
    closes(port, "a.test", "/", ("/", "HTTP/1.1", CLOSE))
    closes(port, "b.test", ("/", "HTTP/1.0", ()))
    closes(port, "b.test", ("/", "HTTP/1.0", ()))
    closes(port, "b.test", "/", "/small.txt", ("/", "HTTP/1.1", CLOSE))
    # One connection, two vhosts: each request counts in its own vhost,
    # the connection ends once, in the vhost of its last request.
    with RawConnection("127.0.0.1", port) as c:
        c.request(build_request(host="a.test"))
        resp = c.request(build_request(host="b.test", headers=CLOSE))
        assert "close" in resp.tokens("Connection"), resp.describe()
        assert c.is_closed(WAIT)
    b = "b.test:%d" % port
    after = scrape_until(scraper, b, before.scope(b).get("count", 0) + 4)
    check_deltas(server, before, after, {
        "a.test": Expect().connection("kc", "client-close").requests("k"),
        "b.test": (Expect().connection("c", "http10-no-optin")
                   .connection("c", "http10-no-optin")
                   .connection("kkc", "client-close")
                   .requests("c").ended(2, "client-close")),
    })
    # The total is the sum of the vhost series, whole counters included.
    total = after.scope()
    summed = Counter()
    for vhost in after.vhosts():
        summed.update(after.scope(vhost))
    assert mismatches(total, dict(summed)) == {}, (
        "total != sum of the vhost series:\n" + after.text)
