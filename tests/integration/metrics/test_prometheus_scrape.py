"""A real Prometheus server scrapes a live httpd: started by the test on
127.0.0.1 with a generated configuration and the shipped rules, it scrapes
/keepalive-status every second; a PromQL query through its HTTP API then
returns the close reasons, by virtual host, that the test's known traffic
produced, and the shipped recording rules evaluate on the live data."""

import time

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.prometheus import RULES, PrometheusServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

WAIT = 30.0  # bound on waiting for Prometheus to have scraped what was sent

# Prometheus's scrapes carry Host: 127.0.0.1:PORT and land on scrape.test,
# the first virtual host; the traffic goes to a.test and b.test.
CONFIG = """\
<Location "/keepalive-status">
    SetHandler keepalive-status
</Location>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName scrape.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName a.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName b.test
</VirtualHost>
"""


@pytest.fixture(scope="module")
def scraped_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
                                 name="prometheus"))


def send_known_traffic(port):
    """a.test: 3 connections that ask to close; b.test: 2 HTTP/1.0 requests
    that do not opt in, and 1 connection kept for 2 requests that the
    client then closes."""
    for _ in range(3):
        with RawConnection("127.0.0.1", port) as c:
            c.request(build_request(host="a.test", headers=[("Connection", "close")]))
    for _ in range(2):
        with RawConnection("127.0.0.1", port) as c:
            c.request(build_request(host="b.test", version="HTTP/1.0"))
    with RawConnection("127.0.0.1", port) as c:
        c.request(build_request(host="b.test"))
        c.request(build_request(host="b.test"))


def test_promql_returns_the_close_reasons_by_vhost(scraped_server):
    port = scraped_server.port
    # A virtual host has series from its first request on, and rate() sees
    # only what a series gained after Prometheus first saw it: a.test serves
    # one request before the first scrape, so that the recording rule below
    # sees the traffic arrive.
    with RawConnection("127.0.0.1", port) as c:
        c.request(build_request(host="a.test", headers=[("Connection", "close")]))
    with PrometheusServer(["127.0.0.1:%d" % port], "/keepalive-status", rule_files=[RULES]) as prom:
        # A first scrape before the traffic, so that rates see it arrive.
        deadline = time.monotonic() + WAIT
        while [h for _, h, _ in prom.targets_health()] != ["up"]:
            assert time.monotonic() < deadline, "no scrape within %d s: %r\n%s" % (
                WAIT, prom.targets_health(), prom.log_text())
            time.sleep(0.2)
        send_known_traffic(port)
        expected = {
            ("a.test:%d" % port, "client-close"): 4,
            ("b.test:%d" % port, "http10-no-optin"): 2,
            ("b.test:%d" % port, "client-gone"): 1,
        }
        query = 'sum by (vhost, reason) (keepalive_connections_closed_total{vhost=~"(a|b)\\\\.test:.*"}) > 0'
        deadline = time.monotonic() + WAIT
        got = None
        while time.monotonic() < deadline:
            got = {(dict(labels)["vhost"], dict(labels)["reason"]): value
                   for labels, value in prom.query(query).items()}
            if got == expected:
                break
            time.sleep(0.5)
        assert got == expected, "PromQL %s gave %r, expected %r; targets: %r\n%s" % (
            query, got, expected, prom.targets_health(), prom.log_text())
        health = prom.targets_health()
        assert [h for _, h, _ in health] == ["up"], health

        # The shipped recording rules evaluate on the live data.
        deadline = time.monotonic() + WAIT
        recorded = {}
        while time.monotonic() < deadline:
            recorded = prom.query('instance_vhost_reason:keepalive_connections_closed:rate5m{vhost="a.test:%d"} > 0'
                                  % port)
            if recorded:
                break
            time.sleep(0.5)
        assert {dict(l)["reason"] for l in recorded} == {"client-close"}, recorded
