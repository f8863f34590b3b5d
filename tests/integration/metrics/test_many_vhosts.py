"""Series in proportion to activity: on a server with 300 name-based
virtual hosts, those that served requests have series and the others none,
and the whole server's series count every request exactly;
KeepAliveMetricsPerVhost leaves hosts out of the per-host series (Off in a
host, or Off in server config with On in the hosts listed), and hosts
beyond KeepAliveMetricsMaxVhosts count together as vhost="other".

Each server is scraped through metrics.test over one persistent
connection (tests/harness/metrics.py's Scraper): the scrapes add kept
requests but no connection end, so once every connection the test opened
has been counted the numbers stand still and are compared exactly."""

import contextlib
import json
import os
import re
import signal
import threading
import time

import pytest

from tests.harness.httpd import HttpdServer, sleeping_lua_handler
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


@contextlib.contextmanager
def scraping(port):
    """A Scraper of metrics.test, closed at the end."""
    scraper = Scraper(port)
    try:
        yield scraper
    finally:
        scraper.close()


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


# -- 300 virtual hosts, 5 active, one Off ------------------------------------
@pytest.fixture(scope="module")
def many(mpm, module_path):
    config = SCRAPE_VHOST + "".join(vhost(host(i)) for i in range(VHOSTS))
    config += vhost("off.test", "KeepAliveMetricsPerVhost Off")
    yield from start(mpm, module_path, config, "many-vhosts")


def test_only_active_vhosts_have_series_and_the_totals_are_exact(many):
    port = many.port
    with scraping(port) as scraper:
        first = scraper.scrape()
        # Nothing served yet: no host has series (the scrape's own request
        # is counted after its body is made).
        assert first.vhosts() <= {"%s:%d" % (METRICS, port)}, sorted(first.vhosts())
        expects = {host(i): send(port, host(i), n) for i, n in ACTIVE.items()}
        off = send(port, "off.test", 3)
        sent = sum(ACTIVE.values()) + 3
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

        # The total counts every request, off.test's too: it is the sum of
        # the host series plus off.test's traffic, and the requests sent.
        total = snap.scope()
        everyone = summed(snap)
        for k, n in off.values(keys).items():
            everyone[k] = everyone.get(k, 0) + n
        assert mismatches(total, everyone) == {}, "total != hosts + off.test:\n" + snap.text
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


# -- KeepAliveMetricsPerVhost Off in server config, On where listed ------------
@pytest.fixture(scope="module")
def listed(mpm, module_path):
    config = ("KeepAliveMetricsPerVhost Off\n" + SCRAPE_VHOST
              + vhost("listed.test", "KeepAliveMetricsPerVhost On")
              + vhost("plain.test"))
    yield from start(mpm, module_path, config, "listed-vhosts")


def test_off_in_server_config_leaves_only_the_listed_hosts(listed):
    port = listed.port
    with scraping(port) as scraper:
        scraper.scrape()
        shown = send(port, "listed.test", 2)
        send(port, "plain.test", 3)
        snap = settled(scraper, 5)
        assert snap.vhosts() == {"listed.test:%d" % port}, sorted(snap.vhosts())
        keys = set(snap.scope())
        assert mismatches(expected_scope(shown, keys), snap.scope("listed.test:%d" % port)) == {}
        total = snap.scope()
        # plain.test's and metrics.test's requests count in the total only.
        assert total["requests"] == 5 + snap.index - 1, total
        assert total["closed:client-close"] == total["count"] == 5, total
        check_promtool(snap.text)


# -- KeepAliveMetricsMaxVhosts: the rest fold into "other" ---------------------
@pytest.fixture(scope="module")
def folded(mpm, module_path):
    # Two blocks for five servers: the main server's (it serves nothing:
    # every request goes to a name-based host) and one host's, whichever
    # httpd lists first; the other four hosts find none.
    config = ("KeepAliveMetricsMaxVhosts 2\n" + SCRAPE_VHOST
              + "".join(vhost("f%d.test" % i) for i in range(1, 5)))
    yield from start(mpm, module_path, config, "folded-vhosts")


def test_hosts_beyond_the_limit_count_together_as_other(folded):
    port = folded.port
    with scraping(port) as scraper:
        scraper.scrape()
        expects = {"f%d.test" % i: send(port, "f%d.test" % i, i) for i in range(1, 5)}
        snap = settled(scraper, 10)
        own = snap.vhosts() - {"other"}
        assert "other" in snap.vhosts() and len(own) == 1, sorted(snap.vhosts())
        (name,) = own
        keys = set(snap.scope())
        host_name = name.rsplit(":", 1)[0]
        # The one host with a block counts its own traffic; every other
        # host's is in "other": the total less that host's.
        if host_name != METRICS:
            assert mismatches(expected_scope(expects[host_name], keys), snap.scope(name)) == {}, snap.scope(name)
        rest = {k: n - snap.scope(name).get(k, 0) for k, n in snap.scope().items()}
        assert mismatches(rest, snap.scope("other")) == {}, snap.text
        assert snap.scope()["requests"] == 10 + snap.index - 1, snap.scope()
        check_promtool(snap.text)
    log = folded.error_log()
    warnings = [l for l in log.splitlines() if "found no block of counters" in l]
    assert len(warnings) == 1, log
    assert warnings and "[keepalive:warn]" in warnings[0] and "mod_keepalive: 4 virtual hosts" in warnings[0] \
        and "KeepAliveMetricsMaxVhosts 2" in warnings[0] and 'vhost="other"' in warnings[0], log


# -- a removed host's block: reused once no older child is left --------------
SLOW_SECONDS = 3.0
REUSE_BASE = ("KeepAliveMetricsMaxVhosts 3\n"
              'LuaMapHandler "^/slow$" "@DIR@/scripts/slow.lua" handle\n'
              + SCRAPE_VHOST)


@pytest.fixture(scope="module")
def reuse(mpm, module_path):
    if mpm != "event":
        pytest.skip("restarts are checked under event only (as test_graceful_restart)")
    # Three blocks: the main server's, metrics.test's and gone.test's.
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=REUSE_BASE + vhost("gone.test"),
        extra_modules=["lua"], files={"scripts/slow.lua": sleeping_lua_handler(SLOW_SECONDS)},
        log_level="notice keepalive:debug", name="reuse-vhosts"))


def graceful(server, config):
    """Rewrites the configuration and restarts gracefully (SIGUSR1), then
    waits for the new generation."""
    server.extra_config = config
    server.conf_path.write_text(server.config_text())
    ready = len(re.findall("resuming normal operations", server.error_log()))
    os.kill(server.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 15
    while len(re.findall("resuming normal operations", server.error_log())) <= ready:
        assert time.monotonic() < deadline, "no restart within 15 s\n" + server.error_log()
        time.sleep(0.05)


def scrape_once(port):
    """One scrape on a connection of its own, with the connection's end
    not waited for: what the hosts under test counted is all it is read for."""
    with scraping(port) as scraper:
        return scraper.scrape()


def requests_of(snap, name):
    return snap.scope(name).get("requests", 0)


def test_a_removed_hosts_block_waits_for_the_old_generation(reuse):
    port = reuse.port
    send(port, "gone.test", 2)
    assert requests_of(scrape_once(port), "gone.test:%d" % port) == 2
    # A request in progress keeps a child of the first generation alive
    # through the restart that removes gone.test.
    slow = {}

    def slow_request():
        with RawConnection("127.0.0.1", port, timeout=SLOW_SECONDS + 10) as c:
            slow["resp"] = c.request(build_request(path="/slow", host="gone.test", headers=CLOSE))

    old_children = set(reuse.children())
    t = threading.Thread(target=slow_request)
    t.start()
    try:
        time.sleep(0.5)
        graceful(reuse, REUSE_BASE + vhost("new.test"))
        # gone.test's block is retired, not free: new.test counts in "other".
        send(port, "new.test", 3)
        snap = scrape_once(port)
        assert "gone.test:%d" % port not in snap.vhosts() and "new.test:%d" % port not in snap.vhosts(), (
            sorted(snap.vhosts()))
        assert requests_of(snap, "other") == 3, snap.scope("other")
    finally:
        t.join(SLOW_SECONDS + 15)
    assert slow["resp"].status == 200, slow["resp"].describe()
    # The first generation's children gone and reaped by the parent (not
    # zombies: reaping is what clears their scoreboard slots), a second
    # restart gives new.test the block, counting from 0.
    deadline = time.monotonic() + 15
    while [p for p in old_children if os.path.exists("/proc/%d" % p)]:
        assert time.monotonic() < deadline, "first-generation children not reaped: %r" % (
            [p for p in old_children if os.path.exists("/proc/%d" % p)])
        time.sleep(0.1)
    graceful(reuse, REUSE_BASE + vhost("new.test"))
    send(port, "new.test", 1)
    snap = scrape_once(port)
    assert requests_of(snap, "new.test:%d" % port) == 1, snap.text
    assert requests_of(snap, "other") == 3, snap.scope("other")
    assert "gone.test:%d" % port not in snap.vhosts()
    # The whole server counted everything: gone.test's 2 and its slow
    # request, new.test's 4, the scrapes.
    total = snap.scope()["requests"]
    assert total == sum(requests_of(snap, v) for v in snap.vhosts()) + 3, (total, snap.text)
