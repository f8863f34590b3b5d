"""The keepalive-status endpoint: its Prometheus output follows the text
exposition format 0.0.4 (checked line by line by the harness's checker,
itself tested here on good and bad text), label values are escaped, the
JSON output agrees with it, only GET is allowed, and Require protects it."""

import json
import time

import pytest

from tests.harness.metrics import (STATUS_PATH, WAIT, Expect, json_scope, scrape_until,
                                   mismatches, parse_exposition, scope_values,
                                   subtract, vhosts_of)
from tests.harness.rawhttp import RawConnection, build_request

# Reasons the issue requires among keepalive_connections_closed_total's.
REQUIRED_REASONS = {
    "client-close", "http10-no-optin", "budget-reached", "lifetime-reached",
    "idle-timeout", "disabled", "disabled-by-condition", "load-shedding",
    "error-status", "undelimited-body", "server-stopping", "client-gone",
    "drain",
}

# The vhost whose name needs escaping in a label value: q"uote\back.test.
ODD_NAME = 'q"uote\\back.test'


# -- the keepalive-status endpoint ----------------------------------------
def test_prometheus_output_follows_the_exposition_format(server, scraper):
    resp = scraper.get(STATUS_PATH)
    assert resp.status == 200, resp.describe()
    ctype = [p.strip() for p in resp.get("Content-Type", "").split(";")]
    assert ctype[0] == "text/plain" and "version=0.0.4" in ctype[1:], (
        resp.describe())
    text = resp.body.decode("utf-8")
    samples, helps, types = parse_exposition(text)
    assert types == {
        "keepalive_requests_total": "counter",
        "keepalive_responses_total": "counter",
        "keepalive_connections_closed_total": "counter",
        "keepalive_requests_per_connection": "histogram",
        "keepalive_connection_lifetime_seconds": "histogram",
        "keepalive_drain_state": "gauge",
        "keepalive_drain_remaining_seconds": "gauge",
        "keepalive_longest_idle_timeout_seconds": "gauge",
        "keepalive_pressure_shedding_ratio": "gauge",
        "keepalive_pressure_ratio": "gauge",
        "keepalive_pressure_combined_ratio": "gauge",
        "keepalive_adaptive_timeout_scale_ratio": "gauge",
    }, text
    assert set(helps) == set(types) and all(helps.values()), text
    lines = text.splitlines()
    for name in types:           # HELP and TYPE come before the samples
        first_sample = min(i for i, l in enumerate(lines)
                           if l.startswith(name) and not l.startswith("#"))
        for kind in ("HELP", "TYPE"):
            declared = [i for i, l in enumerate(lines)
                        if l.startswith("# %s %s " % (kind, name))]
            assert declared and declared[0] < first_sample, (kind, name, text)
    reasons = {dict(l)["reason"] for (n, l) in samples
               if n == "keepalive_connections_closed_total"}
    assert REQUIRED_REASONS <= reasons, (
        "missing reasons: %s" % sorted(REQUIRED_REASONS - reasons))
    decisions = {dict(l)["decision"] for (n, l) in samples
                 if n == "keepalive_responses_total"}
    assert decisions == {"keep", "close"}, text
    # Every scope (the total and each vhost) has every series.
    keys = set(scope_values(samples))
    assert {"requests", "keep", "close", "sum", "count", "le:+Inf"} <= keys
    for vhost in vhosts_of(samples):
        assert set(scope_values(samples, vhost)) == keys, vhost
    for (name, labels) in samples:
        assert set(dict(labels)) - {"vhost"} <= {"decision", "reason", "le", "state", "input"}
    # Counters are whole numbers of counted things (seconds are not things).
    assert all(v == int(v) and v >= 0 for (n, _), v in samples.items()
               if types.get(n, types.get(n.rsplit("_", 1)[0])) != "gauge"
               and n != "keepalive_connection_lifetime_seconds_sum"), text
    # The lifetime histogram counts every connection end, as the
    # requests-per-connection histogram does, in every scope.
    for (n, labels), v in samples.items():
        if n == "keepalive_connection_lifetime_seconds_count":
            assert v == samples["keepalive_requests_per_connection_count", labels], (labels, text)
            assert v == samples["keepalive_connection_lifetime_seconds_bucket",
                                labels | {("le", "+Inf")}], (labels, text)
    # The drain's gauges: none under way.
    assert {dict(l)["state"]: v for (n, l), v in samples.items()
            if n == "keepalive_drain_state"} == {"idle": 1, "draining": 0, "drained": 0}, text
    # load-shedding belongs to the adaptive mode, which is off here.
    assert scope_values(samples)["closed:load-shedding"] == 0


def test_label_values_are_escaped(server, scraper):
    # A virtual host has series once it has served a request.
    with RawConnection("127.0.0.1", server.port) as c:
        c.request(build_request(host="odd.test", headers=[("Connection", "close")]))
    odd = "%s:%d" % (ODD_NAME, server.port)
    # Its end is counted when the server is done with the connection: wait
    # for it, so that the tests after this one see settled counters.
    scrape_until(scraper, odd, 1)
    resp = scraper.get(STATUS_PATH)
    text = resp.body.decode("utf-8")
    samples, _, _ = parse_exposition(text)
    assert odd in vhosts_of(samples), (
        "no series for vhost %r (ServerName with a quote and a backslash); "
        "vhosts: %r\n%s" % (odd, sorted(vhosts_of(samples)), text))
    assert 'vhost="q\\"uote\\\\back.test:%d"' % server.port in text, text


def test_json_agrees_with_prometheus(server, scraper):
    prom = scraper.scrape()
    resp = scraper.get(STATUS_PATH + "?format=json")
    assert resp.status == 200, resp.describe()
    assert resp.get("Content-Type", "").split(";")[0] == "application/json"
    doc = json.loads(resp.body.decode("utf-8"))
    names = [v["vhost"] for v in doc["vhosts"]]
    assert len(names) == len(set(names)), names
    assert set(names) == prom.vhosts(), (names, sorted(prom.vhosts()))
    pairs = [(v["vhost"], json_scope(v), prom.scope(v["vhost"]))
             for v in doc["vhosts"]]
    pairs.append(("total", json_scope(doc["total"]), prom.scope()))
    # The Prometheus scrape itself was counted in between: one request,
    # kept, in the total and in one vhost's series (metrics.test's: which
    # one is the per-vhost tests' business).
    scrape = Expect().requests("k")
    differ = []
    for what, got, seen in pairs:
        assert set(got) == set(seen), (what, sorted(got), sorted(seen))
        delta = subtract(got, seen)
        if what == "total" or any(delta.values()):
            diff = mismatches(scrape.values(seen.keys()), delta)
            assert not diff, "%s: JSON vs Prometheus: %s\n%s\n%s" % (
                what, diff, resp.body.decode(), prom.text)
            differ.append(what)
    assert len(differ) == 2, (
        "JSON and Prometheus differ in %r; expected the total and one "
        "vhost, by the Prometheus scrape request" % differ)


def test_post_to_the_endpoint_gets_405(server, scraper):
    resp = scraper.get(STATUS_PATH, method="POST", body=b"x=1")
    assert resp.status == 405, resp.describe()
    assert b"keepalive_requests_total" not in resp.body, resp.describe()


def test_405_from_the_endpoint_allows_get(server, scraper):
    # RFC 9110 15.5.6: a 405 carries Allow with the supported methods.
    resp = scraper.get(STATUS_PATH, method="POST", body=b"x=1")
    assert resp.status == 405, resp.describe()
    assert "GET" in [m.strip() for m in resp.get("Allow", "").split(",")], (
        resp.describe())


def test_require_rules_protect_the_endpoint(server, scraper):
    resp = scraper.get("/ka-denied")
    assert resp.status == 403, resp.describe()
    assert b"keepalive_" not in resp.body, resp.describe()
    resp = scraper.get("/ka-denied?format=json")
    assert resp.status == 403, resp.describe()


# -- exposition checker self-test --------------------------------------------
GOOD = """\
# HELP x_total Things.
# TYPE x_total counter
x_total 1
x_total{a="q\\"\\\\\\n"} 2
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="+Inf"} 2
h_sum 3
h_count 2
"""
BAD = {
    "sample-before-type": "x_total 1\n# TYPE x_total counter\n",
    "second-type": "# TYPE x counter\n# TYPE x counter\nx 1\n",
    "bad-escape": '# TYPE x counter\nx{a="\\q"} 1\n',
    "unquoted-label": "# TYPE x counter\nx{a=b} 1\n",
    "bad-value": "# TYPE x counter\nx one\n",
    "bad-name": "# TYPE x counter\n1x 1\n",
    "split-group": "# TYPE x counter\n# TYPE y counter\nx 1\ny 1\nx{a=\"b\"} 1\n",
    "duplicate": "# TYPE x counter\nx 1\nx 2\n",
    "no-newline": "# TYPE x counter\nx 1",
    "not-cumulative": GOOD.replace('h_bucket{le="+Inf"} 2',
                                   'h_bucket{le="+Inf"} 0'),
    "inf-not-count": GOOD.replace("h_count 2", "h_count 3"),
    "no-inf": GOOD.replace('h_bucket{le="+Inf"} 2\n', ""),
    "no-sum": GOOD.replace("h_sum 3\n", ""),
    "le-order": GOOD.replace('h_bucket{le="1"} 1\n', "").replace(
        "h_sum", 'h_bucket{le="1"} 1\nh_sum'),
}


def test_exposition_checker_accepts_good_text():
    samples, helps, types = parse_exposition(GOOD)
    assert samples[("x_total", frozenset({("a", 'q"\\' + "\n")}))] == 2
    assert types == {"x_total": "counter", "h": "histogram"}


@pytest.mark.parametrize("text", list(BAD.values()), ids=list(BAD))
def test_exposition_checker_rejects_bad_text(text):
    with pytest.raises(AssertionError):
        parse_exposition(text)


def test_lifetime_histogram_puts_a_connection_in_its_bucket(server, scraper):
    """A connection kept open 1.2 s: counted once, in le="5" but not
    le="1", with its seconds in _sum."""
    vhost = "b.test:%d" % server.port

    def lifetime(samples):
        out = {}
        for (n, labels), v in samples.items():
            labels = dict(labels)
            if labels.pop("vhost", None) != vhost:
                continue
            if n == "keepalive_connection_lifetime_seconds_bucket":
                out[labels["le"]] = v
            elif n in ("keepalive_connection_lifetime_seconds_sum", "keepalive_connection_lifetime_seconds_count"):
                out[n.rsplit("_", 1)[1]] = v
        return out

    before = lifetime(parse_exposition(scraper.get(STATUS_PATH).body.decode())[0])
    with RawConnection("127.0.0.1", server.port) as c:
        c.request(build_request(host="b.test"))
        time.sleep(1.2)
    deadline = time.monotonic() + WAIT
    while True:
        after = lifetime(parse_exposition(scraper.get(STATUS_PATH).body.decode())[0])
        if after.get("count", 0) > before.get("count", 0) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["count"] == 1 and delta["+Inf"] == 1, delta
    assert delta["1"] == 0 and delta["5"] == 1, delta
    assert 1.2 <= delta["sum"] < 3.0, delta
