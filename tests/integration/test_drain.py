"""The drain: ahead of a restart or stop, every HTTP/1.x response closes its
connection, spread over a window, until the longest idle timeout promised
before it has passed; keepalivectl drives it through the keepalive-drain
handler and then restarts.

Each test runs its own server with KeepAliveTimeout 2, so that a drain
lasts 2 s.
"""

import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness.assertions import (assert_closing_without_keepalive,
                                      parse_keepalive)
from tests.harness.httpd import APACHE_BIN, HttpdServer
from tests.harness.metrics import parse_exposition, scope_values
from tests.harness.rawhttp import (ConnectionClosed, RawConnection,
                                   build_request)
from tests.harness.servers import run_configtest, serve

TIMEOUT = 2
KEEPALIVECTL = str(Path(__file__).resolve().parents[2]
                   / "mod_keepalive" / "tools" / "keepalivectl")
DRAIN = "/keepalive-drain"
STATUS = "/keepalive-status"

HANDLERS = """\
<Location "%s">
    SetHandler keepalive-drain
</Location>
<Location "%s">
    SetHandler keepalive-status
</Location>
""" % (DRAIN, STATUS)


def drain_server(mpm, module_path, extra=""):
    return HttpdServer(mpm, module_path, keepalive=("On", str(TIMEOUT), "100"),
                       extra_config=HANDLERS + extra, name="drain")


@pytest.fixture
def server(mpm, module_path):
    yield from serve(drain_server(mpm, module_path))


@pytest.fixture
def unspread_server(mpm, module_path):
    yield from serve(drain_server(mpm, module_path, "KeepAliveDrainSpread 0\n"))


def call(server, method="GET", query=""):
    """The handler's answer as a dict of its "key: value" lines."""
    url = "http://127.0.0.1:%d%s%s" % (server.port, DRAIN, "?" + query if query else "")
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    return dict(line.split(": ", 1) for line in text.splitlines())


def closed_by_drain(server):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (server.port, STATUS), timeout=10) as resp:
        samples = parse_exposition(resp.read().decode())[0]
    return scope_values(samples)["closed:drain"], samples


def keepalivectl(server, *args, timeout=30):
    return subprocess.run(
        [KEEPALIVECTL, "--url", "http://127.0.0.1:%d%s" % (server.port, DRAIN),
         "--apachectl", "%s -f %s -d %s -k" % (APACHE_BIN, server.conf_path, server.dir)] + list(args),
        capture_output=True, text=True, timeout=timeout, env=server._env())


def fetch(server):
    with RawConnection("127.0.0.1", server.port, timeout=10) as c:
        req = build_request()
        return c.request(req), req


# -- the drain itself ---------------------------------------------------------

def test_nothing_kept_yet_means_nothing_to_wait_for(server):
    state = call(server, "POST")
    assert state["state"] == "drained" and state["complete_in"] == "0.000", state


def test_a_drain_closes_every_response_and_ends_on_time(unspread_server):
    server = unspread_server
    resp, _ = fetch(server)
    assert parse_keepalive(resp.get("Keep-Alive")) == {"timeout": TIMEOUT, "max": 100}, resp.describe()
    before, _ = closed_by_drain(server)

    started = time.monotonic()
    state = call(server, "POST")
    assert state["state"] == "draining", state
    assert 0 < float(state["complete_in"]) <= TIMEOUT, state
    # KeepAliveDrainSpread 0: every response closes from the start, on new
    # connections as on old ones, HTTP/1.0 and 1.1 alike.
    for version in ("HTTP/1.1", "HTTP/1.0"):
        with RawConnection("127.0.0.1", server.port, timeout=10) as c:
            req = build_request(version=version, headers=[("Connection", "keep-alive")])
            resp = c.request(req)
            assert_closing_without_keepalive(resp, req)
            assert c.is_closed(1.0), "the drain's close did not close:\n" + resp.describe(req)

    # Complete once the longest timeout promised before it (2 s) has passed.
    deadline = started + TIMEOUT + 3
    while call(server)["state"] == "draining" and time.monotonic() < deadline:
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    final = call(server)
    assert final["state"] == "drained" and final["complete_in"] == "0.000", final
    assert TIMEOUT - 0.3 <= elapsed <= TIMEOUT + 1.0, "drain complete after %.2f s" % elapsed
    resp, req = fetch(server)
    assert_closing_without_keepalive(resp, req)

    after, samples = closed_by_drain(server)
    assert after - before >= 3, "closes not counted as drain: %s" % (after - before)
    states = {dict(labels)["state"]: value for (name, labels), value in samples.items()
              if name == "keepalive_drain_state"}
    assert states == {"idle": 0, "draining": 0, "drained": 1}, states
    assert re.search(r"\[keepalive:notice\].*mod_keepalive: drain started by 127\.0\.0\.1",
                     server.error_log()), server.error_log()[-2000:]


def test_a_spread_drain_promises_nothing_past_its_end(server):
    fetch(server)  # a promise of 2 s, for the drain to outlast
    started = time.monotonic()
    state = call(server, "POST")
    assert state["state"] == "draining" and float(state["spread"]) == TIMEOUT, state
    kept = closed = 0
    # New connections during the drain: each is either closed (its moment
    # has come) or kept with a timeout that ends before the drain does.
    while time.monotonic() - started < TIMEOUT - 0.2:
        resp, req = fetch(server)
        ka = resp.get("Keep-Alive")
        if ka is None:
            assert_closing_without_keepalive(resp, req)
            closed += 1
        else:
            timeout = parse_keepalive(ka)["timeout"]
            left = TIMEOUT - (time.monotonic() - started)
            assert timeout <= left + 0.1, (
                "timeout=%d advertised with %.2f s of the drain left\n%s"
                % (timeout, left, resp.describe(req)))
            kept += 1
        time.sleep(0.05)
    assert closed > 0, "no response closed during the drain"
    assert kept > 0, "the drain closed everything at once: not spread"


def test_a_cancelled_drain_keeps_connections_again(server):
    fetch(server)
    assert call(server, "POST")["state"] == "draining"
    assert call(server, "POST", "action=cancel")["state"] == "idle"
    resp, req = fetch(server)
    assert parse_keepalive(resp.get("Keep-Alive")) == {"timeout": TIMEOUT, "max": 100}, resp.describe(req)
    assert "drain cancelled by 127.0.0.1" in server.error_log()


def test_only_a_post_drains(server):
    assert call(server)["state"] == "idle"
    for method, query, status in (("PUT", "", 405), ("POST", "action=later", 400)):
        with pytest.raises(urllib.error.HTTPError) as err:
            call(server, method, query)
        assert err.value.code == status, (method, query)
    assert call(server)["state"] == "idle"
    resp, req = fetch(server)
    assert resp.get("Keep-Alive") is not None, resp.describe(req)


# -- keepalivectl and a restart -----------------------------------------------

def trusting_client(port, results, stop, gap=0.7):
    """Requests one after another with idle gaps, reusing the connection
    only while the Keep-Alive timeout its last response advertised has not
    run out (less a margin for the request's own travel time), as a client
    that trusts the header does. A reused connection that fails is a lost
    request."""
    conn = None
    expires = 0.0
    while not stop.is_set():
        reused = conn is not None and time.monotonic() < expires
        if not reused:
            if conn:
                conn.close()
            conn = RawConnection("127.0.0.1", port, timeout=10)
        req = build_request()
        try:
            resp = conn.request(req)
        except (ConnectionClosed, OSError) as e:
            results.append(("lost" if reused else "refused", repr(e)))
            conn.close()
            conn = None
            continue
        results.append(("ok", resp.get("Keep-Alive")))
        ka = resp.get("Keep-Alive")
        if ka is None:
            conn.close()
            conn = None
        else:
            expires = time.monotonic() + parse_keepalive(ka)["timeout"] - 0.25
        stop.wait(gap)
    if conn:
        conn.close()


def run_trusting_clients(server, action, clients=4):
    results, stop = [], threading.Event()
    threads = [threading.Thread(target=trusting_client, args=(server.port, results, stop, 0.4 + 0.3 * i))
               for i in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        outcome = action()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    return outcome, results


def test_a_graceful_restart_after_a_drain_loses_no_request(server):
    outcome, results = run_trusting_clients(server, lambda: keepalivectl(server, "graceful"))
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "drain complete" in outcome.stdout, outcome.stdout
    assert re.search(r"graceful restart", server.error_log(), re.I), "no restart happened"
    failed = [r for r in results if r[0] != "ok"]
    assert not failed, "requests lost across the drain and restart: %s" % failed
    assert len(results) >= 15, results
    # The new generation starts undrained: connections are kept again.
    assert call(server)["state"] == "idle"
    resp, req = fetch(server)
    assert parse_keepalive(resp.get("Keep-Alive")) == {"timeout": TIMEOUT, "max": 100}, resp.describe(req)


def test_a_plain_graceful_restart_cuts_trusted_idle_connections(server, mpm):
    """The control for the test above: without the drain, event's graceful
    restart closes idle connections that were promised more time."""
    if mpm != "event":
        pytest.skip("only event cuts idle connections at once on a graceful restart")

    def graceful():
        return subprocess.run([APACHE_BIN, "-f", str(server.conf_path), "-d", str(server.dir), "-k", "graceful"],
                              capture_output=True, text=True, timeout=30, env=server._env())

    outcome, results = run_trusting_clients(server, graceful)
    assert outcome.returncode == 0, outcome.stderr
    assert any(r[0] == "lost" for r in results), (
        "no trusted connection was cut: the drain test above proves nothing\n%s" % results)


def test_keepalivectl_says_clearly_when_there_is_no_handler(server):
    proc = subprocess.run([KEEPALIVECTL, "--url", "http://127.0.0.1:%d/nothing-here" % server.port, "graceful"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "cannot reach the keepalive-drain handler" in proc.stderr, proc.stderr
    assert "graceful" not in proc.stdout, "restarted although the drain failed: " + proc.stdout


# -- configuration ------------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    ("KeepAliveDrainSpread soon\n", "KeepAliveDrainSpread: invalid value 'soon'"),
    ("<VirtualHost *:80>\nKeepAliveDrainSpread 5\n</VirtualHost>\n",
     "KeepAliveDrainSpread cannot occur within <VirtualHost> section"),
])
def test_drain_spread_is_checked_at_configtest(module_path, config, message):
    rc, output, scrubbed, _ = run_configtest(module_path, config)
    assert rc != 0 and message in scrubbed, output


def test_drain_spread_accepts_auto_and_durations(module_path):
    for value in ("auto", "0", "10", "1500ms"):
        rc, output, _, _ = run_configtest(module_path, "KeepAliveDrainSpread %s\n" % value)
        assert rc == 0, (value, output)
