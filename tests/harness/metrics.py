"""What the metrics tests (tests/integration/metrics/) share: the server
they scrape, a checker of the Prometheus text exposition format, expected
counter deltas (Expect), scrapes over one persistent connection (Scraper,
Snapshot) and the exact delta check.

The counters are those of keep-alive decisions and connection ends,
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
import re
import time
from collections import Counter

from tests.harness.configs import STREAM_CONFIG, STREAM_FILES
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import (ConnectionClosed, RawConnection,
                                   build_request)

METRICS = "metrics.test"        # the vhost every scrape goes to
STATUS_PATH = "/ka-status"
WAIT = 6.0                      # bound on every wait for asynchronous counts
KA = [("Connection", "keep-alive")]
CLOSE = [("Connection", "close")]

# /fail: a handler that fails (500). (/stream is configs.STREAM_CONFIG.)
FAIL_LUA = b"""\
function fail(r)
  return 500
end
"""

# traffic.test is first on the address: it also gets the requests whose Host
# is missing or unreadable. No vhost but the odd one has a mod_keepalive
# directive of its own (the <Location>s below are the main server's and
# apply to every vhost): that is how most sites are configured.
CONFIG = STREAM_CONFIG + r"""
LuaMapHandler "^/fail$" "@DIR@/scripts/fail.lua" fail
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
    # No client can send that name: requests for odd.test reach it.
    ServerAlias odd.test
    KeepAliveMaxRequests 100
</VirtualHost>
"""

FILES = dict(STREAM_FILES)
FILES["scripts/fail.lua"] = FAIL_LUA
FILES.update({"htdocs/%s/index.html" % d: b"hello\n"
              for d in ("budget", "life", "cond", "off", "nokeep",
                        "respclose")})


def metrics_server(mpm, module_path):
    """The server of the metrics tests (not started): traffic.test takes
    the traffic, metrics.test the scrapes."""
    return HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=CONFIG,
        extra_modules=["status", "lua", "env"], files=FILES, name="metrics")


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


# -- traffic ----------------------------------------------------------------
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


def fresh_scrape(port):
    """One scrape on a connection of its own (for servers that restart)."""
    with RawConnection("127.0.0.1", port) as c:
        resp = c.request(build_request(path=STATUS_PATH, host=METRICS,
                                       headers=CLOSE))
    assert resp.status == 200, resp.describe()
    return parse_exposition(resp.body.decode("utf-8"))[0]


def fresh_scrape_until(port, vhost, expected_ends, timeout=WAIT):
    """fresh_scrape() until ``vhost``'s series counts ``expected_ends``
    ended connections in all (bounded by ``timeout``); the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = fresh_scrape(port)
        if scope_values(samples, vhost).get("count", 0) >= expected_ends or \
                time.monotonic() > deadline:
            return samples
        time.sleep(0.1)
