"""Series in proportion to activity: on a server with 300 name-based
virtual hosts, those that served requests have series and the others none,
and the whole server's series count every request exactly.

Each server is scraped through metrics.test over one persistent
connection (tests/harness/metrics.py's Scraper): the scrapes add kept
requests but no connection end, so once every connection the test opened
has been counted the numbers stand still and are compared exactly."""

import json
import time

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.metrics import (CLOSE, METRICS, STATUS_PATH, WAIT, Expect,
                                   Scraper, mismatches, scope_values,
                                   vhosts_of)
from tests.harness.prometheus import promtool
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

VHOSTS = 300
# Hosts with traffic, and how many requests each gets (one connection per
# request, closed by the client's Connection: close).
ACTIVE = {0: 1, 73: 2, 150: 3, 222: 4, VHOSTS - 1: 5}

SCRAPE_VHOST = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName metrics.test
    KeepAliveTimeout 30
    MaxKeepAliveRequests 0
    <Location /ka-status>
        SetHandler keepalive-status
    </Location>
</VirtualHost>
"""


def vhost(name, extra=""):
    return ("<VirtualHost 127.0.0.1:@PORT@>\n    ServerName %s\n    %s\n"
            "</VirtualHost>\n" % (name, extra))


def host(i):
    return "v%03d.test" % i


def start(mpm, module_path, config, name):
    return serve(HttpdServer(mpm, module_path, keepalive=("On", "5", "100"),
                             extra_config=config, name=name))


def send(port, hostname, n):
    """``n`` requests to ``hostname``, each on a connection of its own that
    the client asks to close; the expected counts."""
    for _ in range(n):
        with RawConnection("127.0.0.1", port) as c:
            resp = c.request(build_request(host=hostname, headers=CLOSE))
            assert resp.status == 200, resp.describe()
    e = Expect()
    for _ in range(n):
        e.connection("c", "client-close")
    return e


def settled(scraper, connections):
    """Scrapes until the whole server has counted ``connections`` ended
    connections (bounded); the last Prometheus scrape."""
    deadline = time.monotonic() + WAIT
    while True:
        snap = scraper.scrape()
        if snap.scope().get("count", 0) >= connections or time.monotonic() > deadline:
            return snap
        time.sleep(0.1)


def summed(snap):
    out = {}
    for v in snap.vhosts():
        for k, n in snap.scope(v).items():
            out[k] = out.get(k, 0) + n
    return out


def expected_scope(expect, keys):
    return {k: v for k, v in expect.values(keys).items() if k in keys}


def check_promtool(text):
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        "promtool check metrics (exit %d):\n%s%s" % (result.returncode, result.stdout, result.stderr))


# -- 300 virtual hosts, 5 active ----------------------------------------------
@pytest.fixture(scope="module")
def many(mpm, module_path):
    config = SCRAPE_VHOST + "".join(vhost(host(i)) for i in range(VHOSTS))
    yield from start(mpm, module_path, config, "many-vhosts")


def test_only_active_vhosts_have_series_and_the_totals_are_exact(many):
    port = many.port
    scraper = Scraper(port)
    try:
        first = scraper.scrape()
        # Nothing served yet: no host has series (the scrape's own request
        # is counted after its body is made).
        assert first.vhosts() <= {"%s:%d" % (METRICS, port)}, sorted(first.vhosts())
        expects = {host(i): send(port, host(i), n) for i, n in ACTIVE.items()}
        sent = sum(ACTIVE.values())
        snap = settled(scraper, sent)
        keys = set(snap.scope())

        names = {"%s:%d" % (h, port) for h in expects} | {"%s:%d" % (METRICS, port)}
        assert snap.vhosts() == names, (
            "series for %s, expected exactly the hosts that served requests %s"
            % (sorted(snap.vhosts()), sorted(names)))
        for h, e in expects.items():
            got = snap.scope("%s:%d" % (h, port))
            assert mismatches(expected_scope(e, keys), got) == {}, (h, got)
        # metrics.test: every scrape so far, kept, no connection ended.
        scrapes = snap.scope("%s:%d" % (METRICS, port))
        assert scrapes["requests"] == scrapes["keep"] == snap.index - 1, scrapes
        assert scrapes["count"] == 0, scrapes

        # The total counts every request: the sum of the host series, and
        # the requests sent.
        total = snap.scope()
        assert mismatches(total, summed(snap)) == {}, "total != sum of the hosts:\n" + snap.text
        assert total["requests"] == sent + scrapes["requests"], (total, sent)
        assert total["count"] == total["closed:client-close"] == sent, total

        # The same hosts in JSON and in the adaptive mode's per-host gauge.
        resp = scraper.get(STATUS_PATH + "?format=json")
        doc = json.loads(resp.body)
        assert {v["vhost"] for v in doc["vhosts"]} == names, doc["vhosts"]
        assert set(doc["timeout_scale"]["vhosts"]) == names, doc["timeout_scale"]
        scales = {dict(l).get("vhost") for (n, l) in snap.samples
                  if n == "keepalive_adaptive_timeout_scale_ratio"}
        assert scales - {None} == names, scales
        # In proportion: well under what 300 hosts' series would take.
        assert len(snap.text) < 8 * 1024 * (len(names) + 2), len(snap.text)
        check_promtool(snap.text)
    finally:
        scraper.close()
