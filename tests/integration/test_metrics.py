"""Observability: the counters of keep-alive decisions and connection ends,
exported by the keepalive-status handler (Prometheus text format and JSON),
by mod_status (/server-status and ?auto), by the %{keepalive}n access log
note and by the keepalive:trace1 log lines.

How the deltas are made exact. Every test sends its traffic to a name-based
virtual host of its own and scrapes through another one, metrics.test, over
ONE persistent connection kept for the whole module (MaxKeepAliveRequests 0,
KeepAliveTimeout 30): each scrape then adds exactly one request and one kept
response to metrics.test's series and to the total, and no connection end.
So between a baseline scrape B and a later scrape F (F - B scrapes apart):

    traffic vhost delta  == the traffic the test sent (built with Expect)
    metrics.test delta   == F - B requests, all kept, nothing else
    every other vhost    == no change
    total delta          == the sum of the above

Connection ends are counted when the server gets rid of the connection
(asynchronously for idle timeouts and client closes), so the final scrape is
polled (bounded) until the traffic vhost shows every expected end.
"""

import json
import math
import os
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from html import unescape as html_unescape

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import (ConnectionClosed, RawConnection,
                                   build_request)
from tests.harness.servers import serve

METRICS = "metrics.test"        # the vhost every scrape goes to
STATUS_PATH = "/ka-status"
WAIT = 6.0                      # bound on every wait for asynchronous counts
KA = [("Connection", "keep-alive")]
CLOSE = [("Connection", "close")]

# Reasons the issue requires among keepalive_connections_closed_total's.
REQUIRED_REASONS = {
    "client-close", "http10-no-optin", "budget-reached", "lifetime-reached",
    "idle-timeout", "disabled", "disabled-by-condition", "load-shedding",
    "error-status", "undelimited-body", "server-stopping", "client-gone",
}

# The vhost whose name needs escaping in a label value: q"uote\back.test.
ODD_NAME = 'q"uote\\back.test'

LUA = b"""\
-- /stream: a body of unknown length (flushed before the handler is done):
-- "read to EOF" for HTTP/1.0, so the connection must close.
function stream(r)
  r.content_type = "text/plain"
  r:puts("part one\\n")
  r:flush()
  r:puts("part two\\n")
  return apache2.OK
end

function fail(r)
  return 500
end
"""

# traffic.test is first on the address: it also gets the requests whose Host
# is missing or unreadable. No vhost but the odd one has a mod_keepalive
# directive of its own (the <Location>s below are the main server's and
# apply to every vhost): that is how most sites are configured.
CONFIG = r"""
LuaMapHandler "^/stream$" "@DIR@/scripts/ka.lua" stream
LuaMapHandler "^/fail$" "@DIR@/scripts/ka.lua" fail
LogFormat "%v|%r|%<{keepalive}n|%>{keepalive}n" kanote
CustomLog "@DIR@/logs/note.log" kanote

<Location /budget>
    KeepAliveMaxRequests 2
</Location>
<Location /life>
    KeepAliveMaxLifetime 1
</Location>
<Location /cond>
    KeepAliveDisableIf "true"
</Location>
<Location /off>
    KeepAliveIdleTimeout 0
</Location>
<Location /nokeep>
    SetEnv nokeepalive 1
</Location>
<Location /respclose>
    Header always set Connection "close"
</Location>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName traffic.test
    KeepAliveTimeout 2
    MaxKeepAliveRequests 100
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName metrics.test
    KeepAliveTimeout 30
    MaxKeepAliveRequests 0
    <Location /ka-status>
        SetHandler keepalive-status
    </Location>
    <Location /ka-denied>
        SetHandler keepalive-status
        Require all denied
    </Location>
    <Location /server-status>
        SetHandler server-status
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName a.test
    KeepAliveTimeout 5
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName b.test
    KeepAliveTimeout 5
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName log.test
    KeepAliveTimeout 5
    MaxKeepAliveRequests 100
    ErrorDocument 404 /small.txt
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName trace.test
    KeepAliveTimeout 5
    MaxKeepAliveRequests 100
    LogLevel notice keepalive:trace1
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName "q\"uote\\back.test"
    KeepAliveMaxRequests 100
</VirtualHost>
"""

FILES = {"scripts/ka.lua": LUA}
FILES.update({"htdocs/%s/index.html" % d: b"hello\n"
              for d in ("budget", "life", "cond", "off", "nokeep",
                        "respclose")})


# -- Prometheus text exposition format 0.0.4 ----------------------------------
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABEL = r"(%s)=(%s)" % (LABEL_NAME, LABEL_VALUE)
FLOAT = (r"[+-]?(?:Inf|inf|NaN|Nan|nan|"
         r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
SAMPLE_RE = re.compile(
    r"^(%s)(?:\{((?:%s)(?:,%s)*,?)?\})?[ \t]+(%s)(?:[ \t]+(-?[0-9]+))?$"
    % (METRIC_NAME, LABEL, LABEL, FLOAT))
LABEL_RE = re.compile(LABEL)
HELP_RE = re.compile(r"^# HELP (%s)(?: (.*))?$" % METRIC_NAME)
TYPE_RE = re.compile(r"^# TYPE (%s) (\S+)$" % METRIC_NAME)
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def unescape_label(quoted):
    out, body, i = [], quoted[1:-1], 0
    while i < len(body):
        if body[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def parse_float(text):
    return float(text.replace("Nan", "nan"))


def parse_exposition(text):
    """Check ``text`` line by line against the text exposition format 0.0.4
    and return {(name, frozenset(labels.items())): value}.

    Raises AssertionError naming the line for: a malformed HELP, TYPE or
    sample line; a bad escape; a second HELP or TYPE for a family; a TYPE
    after the family's first sample; a family's samples not in one group; a
    duplicate series; a histogram without monotonically non-decreasing
    cumulative buckets ending in le="+Inf" equal to its _count, or without
    _sum; a missing final newline.
    """
    assert text.endswith("\n"), "exposition does not end with a newline"
    helps, types, samples = {}, {}, {}
    order = []              # families in the order their samples appear
    histograms = {}         # family -> {labels without le: {...}}

    def family_of(name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and types.get(base) == "histogram":
                return base
        return name

    for no, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d: %r" % (no, line)
        if line == "":
            continue
        if line.startswith("#"):
            m = HELP_RE.match(line)
            if line.startswith("# HELP"):
                assert m, "malformed HELP line, " + where
                name, doc = m.group(1), m.group(2) or ""
                assert not re.search(r"\\[^\\n]|\\$", doc), (
                    "bad escape in HELP docstring, " + where)
                assert name not in helps, "second HELP for %s, %s" % (
                    name, where)
                helps[name] = doc
                continue
            if line.startswith("# TYPE"):
                m = TYPE_RE.match(line)
                assert m and m.group(2) in TYPES, "malformed TYPE, " + where
                name = m.group(1)
                assert name not in types, "second TYPE for %s, %s" % (
                    name, where)
                assert name not in order, (
                    "TYPE for %s after its samples, %s" % (name, where))
                types[name] = m.group(2)
                continue
            continue                        # a plain comment
        m = SAMPLE_RE.match(line)
        assert m, "malformed sample line, " + where
        name, labels_text, value = m.group(1), m.group(2), m.group(7)
        labels = {}
        for lm in LABEL_RE.finditer(labels_text or ""):
            lname = lm.group(1)
            assert not lname.startswith("__"), "reserved label, " + where
            assert lname not in labels, "label %s twice, %s" % (lname, where)
            labels[lname] = unescape_label(lm.group(2))
        family = family_of(name)
        if not order or order[-1] != family:
            assert family not in order, (
                "samples of %s are not in one group, %s" % (family, where))
            order.append(family)
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate series, " + where
        samples[key] = parse_float(value)
        ftype = types.get(family, "untyped")
        if ftype == "histogram":
            rest = frozenset((k, v) for k, v in labels.items() if k != "le")
            series = histograms.setdefault(family, {}).setdefault(
                rest, {"buckets": [], "sum": None, "count": None})
            if name == family + "_bucket":
                assert "le" in labels, "bucket without le, " + where
                series["buckets"].append((parse_float(labels["le"]),
                                          samples[key], where))
            elif name == family + "_sum":
                series["sum"] = samples[key]
            else:
                series["count"] = samples[key]
        elif ftype == "counter":
            assert samples[key] >= 0, "negative counter, " + where
    for family, by_labels in histograms.items():
        for labels, series in by_labels.items():
            what = "histogram %s%s" % (family, dict(labels))
            buckets = series["buckets"]
            assert buckets, what + " has no buckets"
            les = [b[0] for b in buckets]
            assert les == sorted(les) and len(set(les)) == len(les), (
                what + ": le values not increasing: %r" % les)
            for (_, before, _), (_, after, where) in zip(buckets,
                                                         buckets[1:]):
                assert after >= before, (
                    what + ": cumulative bucket decreases, " + where)
            assert math.isinf(les[-1]) and les[-1] > 0, (
                what + ': last bucket is not le="+Inf"')
            assert series["count"] is not None, what + " has no _count"
            assert series["sum"] is not None, what + " has no _sum"
            assert buckets[-1][1] == series["count"], (
                what + ': le="+Inf" bucket %s != _count %s'
                % (buckets[-1][1], series["count"]))
    return samples, helps, types


def scope_values(samples, vhost=None):
    """The counters of one series scope as a flat dict: requests, keep,
    close, closed:<reason>, le:<bound>, sum, count. vhost None: the total
    (the series without a vhost label)."""
    out = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if labels.pop("vhost", None) != vhost:
            continue
        value = int(value)
        if name == "keepalive_requests_total":
            out["requests"] = value
        elif name == "keepalive_responses_total":
            out[labels["decision"]] = value
        elif name == "keepalive_connections_closed_total":
            out["closed:" + labels["reason"]] = value
        elif name == "keepalive_requests_per_connection_bucket":
            out["le:" + labels["le"]] = value
        elif name == "keepalive_requests_per_connection_sum":
            out["sum"] = value
        elif name == "keepalive_requests_per_connection_count":
            out["count"] = value
    return out


def vhosts_of(samples):
    return {dict(labels)["vhost"] for (_, labels) in samples
            if "vhost" in dict(labels)}


def json_scope(obj):
    """A scope of the JSON output as the same flat dict as scope_values."""
    out = {"requests": obj["requests"], "keep": obj["responses"]["keep"],
           "close": obj["responses"]["close"]}
    for reason, n in obj["connections_closed"].items():
        out["closed:" + reason] = n
    hist = obj["requests_per_connection"]
    for le, n in hist["buckets"].items():
        out["le:" + le] = n
    out["sum"], out["count"] = hist["sum"], hist["count"]
    return out


def subtract(after, before):
    return {k: after.get(k, 0) - before.get(k, 0)
            for k in set(after) | set(before)}


class Expect:
    """Expected counter deltas of one series scope, from the traffic sent."""

    def __init__(self):
        self.counts = Counter()
        self.connections = []       # requests served by each ended connection

    def requests(self, decisions):
        """Responses not (yet) followed by a connection end: 'k' kept,
        'c' closed."""
        self.counts["requests"] += len(decisions)
        self.counts["keep"] += decisions.count("k")
        self.counts["close"] += decisions.count("c")
        return self

    def connection(self, decisions, end):
        """A connection that served ``decisions`` and ended for ``end``."""
        self.requests(decisions)
        self.ended(len(decisions), end)
        return self

    def ended(self, served, end):
        self.counts["closed:" + end] += 1
        self.counts["sum"] += served
        self.counts["count"] += 1
        self.connections.append(served)
        return self

    def plus(self, other):
        out = Expect()
        out.counts = self.counts + other.counts
        out.connections = self.connections + other.connections
        return out

    def values(self, keys):
        """The expected delta of every key in ``keys`` (and of every key
        the traffic touched)."""
        out = {k: 0 for k in keys}
        out.update(self.counts)
        for key in keys:
            if key.startswith("le:"):
                bound = float(key[3:])
                out[key] = sum(1 for n in self.connections if n <= bound)
        return out


def mismatches(expected, actual):
    return {k: "expected %+d, got %+d" % (expected.get(k, 0),
                                          actual.get(k, 0))
            for k in sorted(set(expected) | set(actual))
            if expected.get(k, 0) != actual.get(k, 0)}


# -- scraping ----------------------------------------------------------------
class Snapshot:
    def __init__(self, response, scraper):
        self.response = response
        self.text = response.body.decode("utf-8")
        self.samples, self.helps, self.types = parse_exposition(self.text)
        self.index = scraper.sent          # this scrape's place on the line
        self.connection = scraper.connections

    def scope(self, vhost=None):
        return scope_values(self.samples, vhost)

    def vhosts(self):
        return vhosts_of(self.samples)


class Scraper:
    """Scrapes metrics.test over one persistent connection."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.sent = 0           # requests sent on the current connection
        self.connections = 0    # connections opened so far

    def get(self, path, method="GET", body=b"", host=METRICS):
        if self.conn is None:
            self.conn = RawConnection("127.0.0.1", self.port)
            self.connections += 1
            self.sent = 0
        req = build_request(method=method, path=path, host=host, body=body)
        try:
            resp = self.conn.request(req)
        except (ConnectionClosed, OSError):
            self.close()
            raise
        self.sent += 1
        if "close" in resp.tokens("Connection"):
            self.close()
        return resp

    def scrape(self):
        resp = self.get(STATUS_PATH)
        assert resp.status == 200, resp.describe()
        return Snapshot(resp, self)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def scrape_until(scraper, vhost, expected_ends, timeout=WAIT):
    """Scrape until ``vhost``'s series counts ``expected_ends`` ended
    connections in all (bounded by ``timeout``); returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        snap = scraper.scrape()
        if snap.scope(vhost).get("count", 0) >= expected_ends:
            return snap
        if time.monotonic() > deadline:
            return snap
        time.sleep(0.1)


def check_deltas(server, before, after, expected):
    """``expected``: {vhost name: Expect} of the traffic sent between the
    scrapes ``before`` and ``after`` (vhost names without the port)."""
    assert after.connection == before.connection, (
        "the persistent scrape connection was lost between the two scrapes; "
        "the exact deltas cannot be computed")
    name = lambda host: "%s:%d" % (host, server.port)  # noqa: E731
    scrapes = after.index - before.index
    expected = dict(expected)
    expected[METRICS] = expected.get(METRICS, Expect()).plus(
        Expect().requests("k" * scrapes))
    problems = []
    missing = [name(h) for h in expected if name(h) not in after.vhosts()]
    if missing:
        problems.append("no series for vhost(s) %s; vhost series present: %s"
                        % (missing, sorted(after.vhosts())))
    total = Expect()
    for host, exp in expected.items():
        total = total.plus(exp)
    scopes = [(None, total)] + [(name(h), e) for h, e in expected.items()]
    scopes += [(v, Expect()) for v in sorted(after.vhosts())
               if v not in {name(h) for h in expected}]
    for vhost, exp in scopes:
        actual = subtract(after.scope(vhost), before.scope(vhost))
        diff = mismatches(exp.values(actual.keys()), actual)
        if diff:
            problems.append("%s: %s" % (
                "total" if vhost is None else "vhost=%r" % vhost,
                json.dumps(diff, indent=1)))
    assert not problems, (
        "counter deltas differ from the traffic sent (%d scrapes of %s in "
        "between):\n%s\n--- scrape before (non-zero samples) ---\n%s\n"
        "--- scrape after (non-zero samples) ---\n%s"
        % (scrapes, METRICS, "\n".join(problems), nonzero(before.text),
           nonzero(after.text)))


def nonzero(text):
    return "\n".join(l for l in text.splitlines()
                     if not l.startswith("#") and not l.endswith(" 0"))


# -- fixtures ----------------------------------------------------------------
@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        extra_modules=["status", "lua", "env"], files=FILES, name="metrics"))


@pytest.fixture(scope="module")
def scraper(server):
    s = Scraper(server.port)
    yield s
    s.close()


def request(port, host, *steps, close=False):
    """One connection sending ``steps`` (each a path, or (path, version,
    headers)) and reading each response. Returns the connection, closed by
    the client if ``close``, else still open (the caller closes it), and
    the responses."""
    c = RawConnection("127.0.0.1", port)
    responses = []
    try:
        for step in steps:
            if isinstance(step, str):
                step = (step, "HTTP/1.1", ())
            path, version, headers = step
            responses.append(c.request(build_request(
                path=path, version=version, host=host, headers=headers)))
    except BaseException:
        c.close()
        raise
    if close:
        c.close()
    return c, responses


def closes(port, host, *steps):
    """The last response must close the connection, and the server must."""
    c, responses = request(port, host, *steps)
    with c:
        assert "close" in responses[-1].tokens("Connection"), (
            responses[-1].describe())
        assert c.is_closed(WAIT), "server did not close after:\n%s" % (
            responses[-1].describe())
    return responses


# -- 1. exact deltas ---------------------------------------------------------
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


# -- 2. per vhost ------------------------------------------------------------
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


# -- 3. the keepalive-status endpoint ----------------------------------------
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
        assert set(dict(labels)) - {"vhost"} <= {"decision", "reason", "le"}
    # Values are whole numbers of counted things.
    assert all(v == int(v) and v >= 0 for v in samples.values()), text
    # load-shedding belongs to the adaptive mode, which is off here.
    assert scope_values(samples)["closed:load-shedding"] == 0


def test_label_values_are_escaped(server, scraper):
    resp = scraper.get(STATUS_PATH)
    text = resp.body.decode("utf-8")
    odd = "%s:%d" % (ODD_NAME, server.port)
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


# -- 4. mod_status -----------------------------------------------------------
def test_server_status_pages_show_the_same_numbers(server, scraper):
    prom = scraper.scrape()
    total = prom.scope()
    auto = scraper.get("/server-status?auto")
    assert auto.status == 200, auto.describe()
    html = scraper.get("/server-status")
    assert html.status == 200, html.describe()

    fields = {}
    for line in auto.body.decode().splitlines():
        if line.startswith("KeepAliveMod"):
            key, _, value = line.partition(": ")
            assert key not in fields, "%s twice:\n%s" % (key, auto.body)
            fields[key] = value
    text = auto.body.decode()
    # The Prometheus scrape was counted (kept) before ?auto was rendered.
    want = {"KeepAliveModRequests": total["requests"] + 1,
            "KeepAliveModResponsesKeep": total["keep"] + 1,
            "KeepAliveModResponsesClose": total["close"],
            "KeepAliveModConnectionsClosed": total["count"]}
    for key, value in want.items():
        assert fields.get(key) == str(value), "%s: want %s\n%s\n%s" % (
            key, value, text, prom.text)
    reasons = [k[len("closed:"):] for k in total if k.startswith("closed:")]
    for reason in reasons:
        key = "KeepAliveModClosed-" + reason
        assert fields.get(key) == str(total["closed:" + reason]), (
            "%s\n%s\n%s" % (key, text, prom.text))
    mean = total["sum"] / total["count"] if total["count"] else 0.0
    assert fields.get("KeepAliveModRequestsPerConnection") == "%.2f" % mean, (
        text)

    page = html.body.decode()
    assert re.search(r"<h2>mod_keepalive</h2>", page), page
    section = page[page.index("<h2>mod_keepalive</h2>"):]
    m = re.search(r"(\d+) requests decided", section)
    assert m and int(m.group(1)) == total["requests"] + 2, section
    for reason in reasons:
        assert "<td>%s</td><td>%d</td>" % (
            reason, total["closed:" + reason]) in section, (reason, section)
    rows = re.findall(r"<tr><td>([^<]*)</td><td>(\d+)</td><td>(\d+)</td>"
                      r"<td>(\d+)</td></tr>", section)
    assert sorted(html_unescape(r[0]) for r in rows) == sorted(
        prom.vhosts()), (rows, sorted(prom.vhosts()), section)


# -- 5. the %{keepalive}n access log note ------------------------------------
def test_access_log_note_says_the_decision_and_its_reason(server, scraper):
    port, host = server.port, "log.test"
    closes(port, host, "/?id=a1", "/?id=a2", ("/?id=a3", "HTTP/1.1", CLOSE))
    closes(port, host, ("/?id=b1", "HTTP/1.0", ()))
    closes(port, host, ("/?id=c1", "HTTP/1.0", KA), ("/?id=c2", "HTTP/1.0",
                                                     ()))
    closes(port, host, "/cond/?id=d1")
    c, (missing,) = request(port, host, "/nothing-here?id=e1")
    with c:
        assert missing.status == 404 and missing.body == b"hello\n", (
            "test precondition: ErrorDocument 404 /small.txt\n"
            + missing.describe())
        last = c.request(build_request(path="/?id=e2", host=host,
                                       headers=CLOSE))
        assert "close" in last.tokens("Connection"), last.describe()
    want = {
        "a1": "keep timeout=5 max=100",
        "a2": "keep timeout=5 max=99",
        "a3": "close client-close",
        "b1": "close http10-no-optin",
        "c1": "keep timeout=5 max=100",
        "c2": "close http10-no-optin",
        "d1": "close disabled-by-condition",
        "e1": "keep timeout=5 max=100",     # ErrorDocument: both requests
        "e2": "close client-close",
    }
    log = server.dir / "logs" / "note.log"
    deadline = time.monotonic() + WAIT
    while True:
        text = log.read_text() if log.exists() else ""
        got = {}
        for line in text.splitlines():
            vhost, req, first, final = line.split("|")
            m = re.search(r"\?id=(\w+) ", req)
            if vhost == host and m:
                got[m.group(1)] = (first, final)
        if set(got) >= set(want) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    wrong = {i: got.get(i) for i, note in want.items()
             if got.get(i) != (note, note)}
    assert not wrong, ("access log notes (original request, final request) "
                       "differ: %r\nwanted %r\n--- %s ---\n%s"
                       % (wrong, want, log, text))


# -- 6. trace1 lines ---------------------------------------------------------
TRACE_RE = re.compile(r"^\[[^\]]+\] \[keepalive:trace1\] \[pid \d+[^\]]*\] "
                      r"[^ ]+ \[client 127\.0\.0\.1:(\d+)\] (.*)$")


def test_trace_log_explains_each_decision(server, scraper):
    port, host = server.port, "trace.test"
    traffic = [
        (["/", "/", ("/", "HTTP/1.1", CLOSE)],
         ["keep timeout=5 max=100 (idle 5000 ms)",
          "keep timeout=5 max=99 (idle 5000 ms)",
          "close client-close"]),
        ([("/", "HTTP/1.0", ())], ["close http10-no-optin"]),
        (["/budget/", "/budget/", "/budget/"],
         ["keep timeout=5 max=2 (idle 5000 ms)",
          "keep timeout=5 max=1 (idle 5000 ms)",
          "close budget-reached"]),
        (["/cond/"], ["close disabled-by-condition"]),
    ]
    want = {}
    for steps, lines in traffic:
        c, _ = request(port, host, *steps)
        with c:
            want[c.sock.getsockname()[1]] = lines
            assert c.is_closed(WAIT)
    deadline = time.monotonic() + WAIT
    while True:
        got = {}
        for line in server.error_log().splitlines():
            m = TRACE_RE.match(line)
            if m and int(m.group(1)) in want:
                got.setdefault(int(m.group(1)), []).append(m.group(2))
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == want, ("keepalive:trace1 lines per client port differ:\n"
                         "got  %r\nwant %r\n--- error log ---\n%s"
                         % (got, want, server.error_log()[-5000:]))


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


# -- 7. graceful restart -----------------------------------------------------
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
        extra_config=RESTART_CONFIG, name="metrics-restart"))


def fresh_scrape(port):
    with RawConnection("127.0.0.1", port) as c:
        resp = c.request(build_request(path=STATUS_PATH, host=METRICS,
                                       headers=CLOSE))
    assert resp.status == 200, resp.describe()
    return parse_exposition(resp.body.decode("utf-8"))[0]


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
    deadline = time.monotonic() + WAIT
    while True:
        after = fresh_scrape(port)
        if scope_values(after, vhost).get("count", 0) >= 2 or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lower = {(n, dict(l).get("vhost"), dict(l).get("decision"),
              dict(l).get("reason"), dict(l).get("le")): (before[(n, l)],
                                                          after.get((n, l)))
             for (n, l) in before
             if after.get((n, l)) is None or after[(n, l)] < before[(n, l)]}
    assert not lower, "series lost or lower after the restart: %r" % lower
    diff = mismatches(
        Expect().ended(1, "server-stopping").values(
            scope_values(after, vhost).keys()),
        subtract(scope_values(after, vhost), scope_values(before, vhost)))
    assert not diff, "r.test after the restart: %s" % diff
    # And they keep counting.
    closes(port, "r.test", "/", "/", ("/", "HTTP/1.1", CLOSE))
    deadline = time.monotonic() + WAIT
    while True:
        later = fresh_scrape(port)
        if scope_values(later, vhost).get("count", 0) >= 3 or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    diff = mismatches(
        Expect().connection("kkc", "client-close").values(
            scope_values(later, vhost).keys()),
        subtract(scope_values(later, vhost), scope_values(after, vhost)))
    assert not diff, "r.test, traffic after the restart: %s" % diff
    assert scope_values(later)["requests"] >= scope_values(after)[
        "requests"] + 3
