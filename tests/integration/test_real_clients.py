"""Real HTTP clients against the module, each checked the way its user would
check it: curl (HTTP/1.0, HTTP/1.1, h2c), ab -k, wrk, h2load (--h1 and h2c)
and Node's built-in fetch (undici), which trusts the Keep-Alive timeout hint.

What the clients report is cross-checked against the access log, whose
format (tests/harness/httpd.py) logs %k, the number of earlier requests on
the connection, %X, the server's own verdict (+ kept, - closed), and the
client's port: a connection is one client port whose %k runs 0, 1, 2, ...
Every request of a test carries a query string of its own, so its log lines
are told apart.

A missing client fails the test (``make deps`` installs them all): a skip
would let CI pass without ever running it.
"""

import json
import re
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.servers import serve
from tests.harness.wrk import parse_wrk

TIMEOUT = 3          # KeepAliveTimeout: the hint every client is given
BUDGET = 100         # MaxKeepAliveRequests on the main port

# @PORT1@: no request budget, so that under wrk's load no connection is
# closed by the server and any socket error is a real one.
# @PORT2@: h2c (upgrade and prior knowledge) besides HTTP/1.1.
CONFIG = """\
<VirtualHost 127.0.0.1:@PORT1@>
    MaxKeepAliveRequests 0
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT2@>
    Protocols h2c http/1.1
</VirtualHost>
"""

# Name-based virtual hosts where core httpd's hint is wrong: the vhost that
# fetch() reaches (Host: 127.0.0.1:port) sets no KeepAliveTimeout, so it
# inherits the main server's 5 s and core advertises that, while httpd waits
# with the first vhost's 1 s on the address (see test_vhosts.py).
INHERITING_VHOST = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName a.test
    KeepAliveTimeout 1
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName 127.0.0.1
</VirtualHost>
"""

H2_ADVISORY = re.compile(r"AH10034: .*not supported by mod_http2.*"
                         r"HTTP/2 protocol will be inactive")
NODE_SCRIPT = Path(__file__).resolve().parent / "clients" / "fetch_keepalive.js"
LOG_RE = re.compile(r'"(?P<method>\S+) (?P<uri>\S+) (?P<proto>[^"]+)" '
                    r'(?P<status>\d{3}) \S+ ka=(?P<ka>\d+) conn=(?P<conn>\S) '
                    r'port=(?P<port>\d+)$')


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", str(TIMEOUT), str(BUDGET)),
                                 extra_modules=("http2",), extra_ports=2,
                                 extra_config=CONFIG, name="clients"))


@pytest.fixture(scope="module")
def vhost_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "100"),
                                 extra_config=INHERITING_VHOST,
                                 name="clients-vhost"))


# -- helpers -----------------------------------------------------------------
def require_tool(name, package):
    path = shutil.which(name)
    if path is None:
        pytest.fail("%s not found: install the Debian package %s (`make deps` "
                    "installs every client these tests use)" % (name, package),
                    pytrace=False)
    return path


def marker(client):
    """A query string of its own for each test's requests."""
    return "client=%s-%s" % (client, uuid.uuid4().hex[:8])


def url(port, path):
    return "http://127.0.0.1:%d%s" % (port, path)


def log_entries(server, mark, expected, timeout=5.0):
    """Access-log entries whose URI carries ``mark``, in log order, once at
    least ``expected`` are there (httpd logs a request after its response:
    bounded wait), and once their number has stopped growing."""
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        entries = []
        for line in server.access_log().splitlines():
            m = LOG_RE.search(line)
            if m and mark in m.group("uri"):
                entries.append(m.groupdict())
        if (len(entries) >= expected and len(entries) == previous) \
                or time.monotonic() > deadline:
            return entries
        previous = len(entries)
        time.sleep(0.1)


def connections(entries):
    """{client port: [%k of each request on it, in order]}"""
    out = {}
    for e in entries:
        out.setdefault(e["port"], []).append(int(e["ka"]))
    return out


def describe_log(entries):
    return "access log entries:\n" + "\n".join(
        '"%s %s %s" %s ka=%s conn=%s port=%s' % (
            e["method"], e["uri"], e["proto"], e["status"], e["ka"], e["conn"],
            e["port"]) for e in entries)


def assert_each_port_is_one_connection(entries):
    """Every client port carries requests %k = 0, 1, 2, ...: one connection
    each, opened during this test, nothing lost in between."""
    for port, kas in connections(entries).items():
        assert kas == list(range(len(kas))), (
            "port %s: %%k should count 0, 1, 2, ... on one connection\n%s"
            % (port, describe_log(entries)))


class CurlRun:
    def __init__(self, args, proc, header_text):
        self.args = args
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr        # -v: the connection story
        self.header_text = header_text
        # one "VERSION=1.1 STATUS=200 CONNECTS=1" line per transfer
        self.transfers = [dict(kv.split("=", 1) for kv in line.split())
                          for line in proc.stdout.splitlines() if line.strip()]
        # header blocks (interim 101 responses included), each a list of lines
        self.blocks = [b.splitlines() for b in
                       re.split(r"\r?\n\r?\n", header_text) if b.strip()]

    def header(self, block, name):
        name = name.lower()
        return [l.split(":", 1)[1].strip() for l in block[1:]
                if ":" in l and l.split(":", 1)[0].strip().lower() == name]

    def final_blocks(self):
        return [b for b in self.blocks if not re.match(r"HTTP/\S+ 1\d\d", b[0])]

    def sent_headers(self, name):
        """Values of request header ``name`` curl sent (from -v)."""
        return re.findall(r"^> %s: (.*?)\r?$" % re.escape(name), self.stderr,
                          re.MULTILINE | re.IGNORECASE)

    def describe(self):
        return ("%s\nexit status %s\nwrite-out:\n%s\nheaders received:\n%s\n"
                "verbose output:\n%s" % (
                    " ".join(self.args), self.returncode, self.stdout,
                    self.header_text, self.stderr))


def run_curl(tmp_path, urls, *options):
    curl = require_tool("curl", "curl")
    hdr = tmp_path / ("headers-%s.txt" % uuid.uuid4().hex[:8])
    args = [curl, "-sS", "-v", "--max-time", "10", "-D", str(hdr),
            "-w", "VERSION=%{http_version} STATUS=%{response_code} "
                  "CONNECTS=%{num_connects}\\n"]
    args += list(options)
    for u in urls:
        args += ["-o", "/dev/null", u]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    text = hdr.read_text(errors="replace") if hdr.exists() else ""
    return CurlRun(args, proc, text)


def require_h2(server, ok, what):
    """Fail unless the client spoke HTTP/2 -- except under prefork, where
    mod_http2 is inactive: that is checked in the error log and reported as
    a skip with httpd's advisory, as in test_http2.py."""
    if ok:
        return
    advisory = [l for l in server.error_log().splitlines()
                if H2_ADVISORY.search(l)]
    if server.mpm == "prefork" and advisory:
        pytest.skip("mod_http2 is inactive under prefork; httpd logged: %s"
                    % advisory[0])
    pytest.fail("the client did not speak HTTP/2 with the server\n" + what,
                pytrace=False)


# -- curl ----------------------------------------------------------------------
def test_curl_http11_reuses_the_connection_and_sees_the_hint(server,
                                                              tmp_path):
    mark = marker("curl11")
    urls = [url(server.port, "/small.txt?%s-%d" % (mark, i)) for i in range(3)]
    run = run_curl(tmp_path, urls)
    what = run.describe()
    assert run.returncode == 0, what
    assert run.sent_headers("Connection") == [], (
        "precondition: curl sends no Connection header over HTTP/1.1\n" + what)
    assert [t["STATUS"] for t in run.transfers] == ["200"] * 3, what
    assert [t["VERSION"] for t in run.transfers] == ["1.1"] * 3, what
    # curl's own account: one connect, then two reuses
    assert [t["CONNECTS"] for t in run.transfers] == ["1", "0", "0"], what
    assert run.stderr.count("Re-using existing") == 2, what
    blocks = run.final_blocks()
    assert len(blocks) == 3, what
    assert [run.header(b, "Keep-Alive") for b in blocks] == [
        ["timeout=%d, max=%d" % (TIMEOUT, BUDGET - i)] for i in range(3)], (
        "expected Keep-Alive: timeout=%d, max=%d counting down\n%s"
        % (TIMEOUT, BUDGET, what))
    for b in blocks:
        tokens = ",".join(run.header(b, "Connection")).lower()
        assert "close" not in tokens, what
    entries = log_entries(server, mark, 3)
    assert len(entries) == 3, describe_log(entries)
    assert list(connections(entries).values()) == [[0, 1, 2]], (
        "expected the three requests on one connection\n"
        + describe_log(entries))
    assert [e["conn"] for e in entries] == ["+"] * 3, describe_log(entries)


def test_curl_http10_gets_close_and_no_keepalive_header(server, tmp_path):
    mark = marker("curl10")
    urls = [url(server.port, "/small.txt?%s-%d" % (mark, i)) for i in range(2)]
    run = run_curl(tmp_path, urls, "--http1.0")
    what = run.describe()
    assert run.returncode == 0, what
    assert run.sent_headers("Connection") == [], (
        "precondition: curl --http1.0 does not ask for keep-alive\n" + what)
    assert [t["STATUS"] for t in run.transfers] == ["200"] * 2, what
    assert len(re.findall(r"^> GET \S+ HTTP/1\.0\r?$", run.stderr,
                          re.MULTILINE)) == 2, what
    blocks = run.final_blocks()
    assert len(blocks) == 2, what
    for b in blocks:
        assert run.header(b, "Keep-Alive") == [], (
            "an HTTP/1.0 client that did not opt in got Keep-Alive\n" + what)
        assert [v.lower() for v in run.header(b, "Connection")] == ["close"], (
            "expected Connection: close\n" + what)
    # a connection of its own for each request
    assert [t["CONNECTS"] for t in run.transfers] == ["1", "1"], what
    assert "Re-using existing" not in run.stderr, what
    entries = log_entries(server, mark, 2)
    assert len(entries) == 2, describe_log(entries)
    assert sorted(connections(entries).values()) == [[0], [0]], (
        describe_log(entries))
    # the server's own verdict: it closed each connection
    assert [e["conn"] for e in entries] == ["-", "-"], describe_log(entries)


def test_curl_http10_opting_in_is_kept_and_told_the_hint(server, tmp_path):
    mark = marker("curl10ka")
    urls = [url(server.port, "/small.txt?%s-%d" % (mark, i)) for i in range(2)]
    run = run_curl(tmp_path, urls, "--http1.0", "-H", "Connection: keep-alive")
    what = run.describe()
    assert run.returncode == 0, what
    assert [t["STATUS"] for t in run.transfers] == ["200"] * 2, what
    blocks = run.final_blocks()
    assert [run.header(b, "Keep-Alive") for b in blocks] == [
        ["timeout=%d, max=%d" % (TIMEOUT, BUDGET - i)] for i in range(2)], what
    for b in blocks:
        assert [v.lower() for v in run.header(b, "Connection")] == [
            "keep-alive"], what
    assert [t["CONNECTS"] for t in run.transfers] == ["1", "0"], what
    assert run.stderr.count("Re-using existing") == 1, what
    entries = log_entries(server, mark, 2)
    assert list(connections(entries).values()) == [[0, 1]], (
        describe_log(entries))


def assert_h2_response_without_connection_headers(run, block):
    what = run.describe()
    assert re.match(r"HTTP/2 200\b", block[0]), (
        "expected an HTTP/2 200 response\n" + what)
    for name in ("Connection", "Keep-Alive"):
        assert run.header(block, name) == [], (
            "%s header sent over HTTP/2\n%s" % (name, what))


def test_curl_h2c_upgrade_has_no_connection_headers(server, tmp_path):
    port = server.extra_ports[1]
    run = run_curl(tmp_path, [url(port, "/small.txt?" + marker("curl-h2c"))],
                   "--http2")
    require_h2(server, run.returncode == 0
               and [t["VERSION"] for t in run.transfers] == ["2"],
               run.describe())
    what = run.describe()
    assert len(run.blocks) == 2, what
    upgrade, final = run.blocks
    assert upgrade[0].startswith("HTTP/1.1 101"), (
        "expected 101 Switching Protocols first\n" + what)
    assert run.header(upgrade, "Keep-Alive") == [], (
        "a 101 response carries no Keep-Alive\n" + what)
    assert_h2_response_without_connection_headers(run, final)


def test_curl_h2_prior_knowledge_has_no_connection_headers(server, tmp_path):
    port = server.extra_ports[1]
    mark = marker("curl-h2")
    run = run_curl(tmp_path, [url(port, "/small.txt?" + mark)],
                   "--http2-prior-knowledge")
    require_h2(server, run.returncode == 0
               and [t["VERSION"] for t in run.transfers] == ["2"],
               run.describe())
    assert len(run.blocks) == 1, run.describe()
    assert_h2_response_without_connection_headers(run, run.blocks[0])
    entries = log_entries(server, mark, 1)
    assert [e["proto"] for e in entries] == ["HTTP/2.0"], describe_log(entries)


# -- ab -k -------------------------------------------------------------------
def test_ab_keepalive_every_request_kept(server):
    ab = require_tool("ab", "apache2-utils")
    mark = marker("ab")
    n, c = 100, 4
    args = [ab, "-k", "-n", str(n), "-c", str(c), "-s", "10",
            url(server.port, "/small.txt?" + mark)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    out = "%s\nexit %s\n%s%s" % (" ".join(args), proc.returncode, proc.stdout,
                                 proc.stderr)
    assert proc.returncode == 0, out

    def figure(label):
        m = re.search(r"^%s:\s+(\d+)" % label, proc.stdout, re.MULTILINE)
        assert m, "no '%s' in ab's report\n%s" % (label, out)
        return int(m.group(1))

    assert figure("Complete requests") == n, out
    assert figure("Failed requests") == 0, out
    assert figure("Keep-Alive requests") == n, out
    assert "Non-2xx responses" not in proc.stdout, out
    entries = log_entries(server, mark, n)
    what = out + describe_log(entries)
    assert len(entries) == n, what
    assert {e["status"] for e in entries} == {"200"}, what
    assert {e["proto"] for e in entries} == {"HTTP/1.0"}, what
    assert {e["conn"] for e in entries} == {"+"}, what
    assert len(connections(entries)) == c, (
        "expected ab's %d connections to carry all requests\n%s" % (c, what))
    assert_each_port_is_one_connection(entries)


# -- wrk -----------------------------------------------------------------------
def test_wrk_reuses_its_connections_without_errors(server):
    wrk = require_tool("wrk", "wrk")
    mark = marker("wrk")
    c = 4
    args = [wrk, "-t1", "-c%d" % c, "-d2s", "--timeout", "3s",
            url(server.extra_ports[0], "/small.txt?" + mark)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    out = "%s\nexit %s\n%s%s" % (" ".join(args), proc.returncode, proc.stdout,
                                 proc.stderr)
    assert proc.returncode == 0, out
    summary = parse_wrk(proc.stdout)
    assert summary["ok"], out
    count = summary["requests"]
    assert count > 100, out
    assert "Socket errors" not in proc.stdout, out
    assert "Non-2xx or 3xx responses" not in proc.stdout, out
    entries = log_entries(server, mark, count, timeout=10)
    # wrk counts the responses it read; the server may have logged one more
    # request per connection that was in flight when wrk stopped
    assert count <= len(entries) <= count + c, (
        "wrk counted %d requests, the server logged %d\n%s"
        % (count, len(entries), out))
    conns = connections(entries)
    assert len(conns) == c, (
        "expected wrk's %d connections to carry every request, the server "
        "saw %d:\n%s\n%s" % (c, len(conns), out, describe_log(entries[:20])))
    assert_each_port_is_one_connection(entries)
    assert {e["status"] for e in entries} == {"200"}, out
    assert {e["conn"] for e in entries} == {"+"}, (
        "the server closed (-) or lost (X) a connection under wrk\n%s\n%s"
        % (out, describe_log([e for e in entries if e["conn"] != "+"])))


# -- h2load --------------------------------------------------------------------
H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout")


def run_h2load(port, mark, n, c, *options):
    h2load = require_tool("h2load", "nghttp2-client")
    args = [h2load, "-n", str(n), "-c", str(c), "-t", "1", "-T", "10"]
    args += list(options) + [url(port, "/small.txt?" + mark)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    out = "%s\nexit %s\n%s%s" % (" ".join(args), proc.returncode, proc.stdout,
                                 proc.stderr)
    m = H2LOAD_REQUESTS.search(proc.stdout)
    counts = tuple(map(int, m.groups())) if m else None
    return proc, counts, out


def assert_h2load_all_succeeded(proc, counts, out, n):
    assert proc.returncode == 0, out
    assert counts == (n, n, n, n, 0, 0, 0), (
        "expected %d requests, all succeeded, none failed or errored\n%s"
        % (n, out))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx",
                  proc.stdout)
    assert m and tuple(map(int, m.groups())) == (n, 0, 0, 0), out


def test_h2load_h1_all_requests_succeed_on_reused_connections(server):
    mark = marker("h2load-h1")
    n, c = 60, 3
    proc, counts, out = run_h2load(server.port, mark, n, c, "--h1")
    assert_h2load_all_succeeded(proc, counts, out, n)
    entries = log_entries(server, mark, n)
    what = out + describe_log(entries)
    assert len(entries) == n, what
    assert {e["proto"] for e in entries} == {"HTTP/1.1"}, what
    assert {e["conn"] for e in entries} == {"+"}, what
    # h2load shares the requests out evenly: n/c on each connection
    assert sorted(len(k) for k in connections(entries).values()) == \
        [n // c] * c, what
    assert_each_port_is_one_connection(entries)


def test_h2load_h2c_all_requests_succeed(server):
    mark = marker("h2load-h2c")
    n, c = 60, 3
    proc, counts, out = run_h2load(server.extra_ports[1], mark, n, c)
    require_h2(server, proc.returncode == 0 and counts is not None
               and counts[3] == n and "h2c" in proc.stdout, out)
    assert_h2load_all_succeeded(proc, counts, out, n)
    entries = log_entries(server, mark, n)
    what = out + describe_log(entries)
    assert len(entries) == n, what
    assert {e["proto"] for e in entries} == {"HTTP/2.0"}, what
    assert len(connections(entries)) == c, what


# -- Node's fetch (undici) -------------------------------------------------------
def run_node(server, config):
    node = require_tool("node", "nodejs")
    config = dict(config, base="http://127.0.0.1:%d" % server.port)
    args = [node, str(NODE_SCRIPT), json.dumps(config)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    what = "%s\nexit %s\nstdout: %s\nstderr: %s" % (
        " ".join(args), proc.returncode, proc.stdout, proc.stderr)
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = None
    return {"out": out, "what": what, "returncode": proc.returncode}


def node_requests(mark, gaps):
    reqs = [{"path": "/small.txt?%s-0" % mark}]
    reqs += [{"path": "/small.txt?%s-%d" % (mark, i + 1), "gap": g}
             for i, g in enumerate(gaps)]
    return reqs


@pytest.fixture(scope="module")
def node_runs(server, vhost_server):
    """The Node cases of one MPM, run at the same time (each in a process,
    an agent and a connection of its own) so they cost the longest one."""
    marks = {name: marker("node-" + name) for name in
             ("inside", "near-hint", "trusting", "vhost")}
    cases = {
        # spaced inside undici's reuse window (hint minus its threshold)
        "inside": (server, {
            "requests": node_requests(marks["inside"],
                                      [{"window_minus": 300}] * 2),
            "threshold_ms": None, "linger": {"window_plus": 600}}),
        # spaced just under the advertised timeout
        "near-hint": (server, {
            "requests": node_requests(marks["near-hint"],
                                      [{"hint_minus": 500}]),
            "threshold_ms": None, "linger": {"ms": 300}}),
        # the same spacing from an agent that trusts the hint fully
        # (undici's keepAliveTimeoutThreshold: 0): reused up to T
        "trusting": (server, {
            "requests": node_requests(marks["trusting"],
                                      [{"hint_minus": 500}]),
            "threshold_ms": 0, "linger": {"ms": 300}}),
        # a vhost whose timeout is inherited (INHERITING_VHOST)
        "vhost": (vhost_server, {
            "requests": node_requests(marks["vhost"], [{"ms": 1500}]),
            "threshold_ms": None, "linger": {"ms": 300}}),
    }
    require_tool("node", "nodejs")
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {name: pool.submit(run_node, srv, cfg)
                   for name, (srv, cfg) in cases.items()}
        runs = {name: f.result(timeout=90) for name, f in futures.items()}
    for name, run in runs.items():
        run["mark"] = marks[name]
        run["server"] = cases[name][0]
    return runs


def node_run_ok(run):
    """The script ran, every fetch() answered 200, none failed."""
    out, what = run["out"], run["what"]
    assert run["returncode"] == 0 and out and "fatal" not in out, what
    print("node %s, undici %s: keepAliveTimeoutThreshold %s ms, default "
          "keep-alive %s ms" % (out["node"], out["undici"],
                                out["threshold_ms"], out["default_ms"]))
    assert out["clients_found"] >= 1, (
        "could not read undici's settings from its Client objects\n" + what)
    errors = [r for r in out["results"] if "error" in r]
    assert not errors, "fetch() failed:\n%s" % what
    assert [r["status"] for r in out["results"]] == [200] * len(
        out["results"]), what
    return out


def server_closes(out):
    """Disconnects undici saw because the server closed first."""
    return [e for e in out["events"] if e["type"] != "connect"
            and (e["error"] or {}).get("message") != "socket idle timeout"
            and (e["error"] or {}).get("message") != "reset"]


def describe_node(run, entries=None):
    out = json.dumps(run["out"], indent=1) if run["out"] else run["what"]
    return out + ("\n" + describe_log(entries) if entries is not None else "")


def test_node_fetch_reuses_inside_its_window_and_closes_first(node_runs):
    run = node_runs["inside"]
    out = node_run_ok(run)
    threshold = out["threshold_ms"]
    window = TIMEOUT * 1000 - threshold
    what = describe_node(run)
    assert window > 0, (
        "undici's keepAliveTimeoutThreshold (%s ms) is not below the "
        "advertised %d s: it would never reuse a connection\n%s"
        % (threshold, TIMEOUT, what))
    results = out["results"]
    assert [r["keep_alive"] for r in results] == [
        "timeout=%d, max=%d" % (TIMEOUT, BUDGET - i) for i in range(3)], what
    # what undici made of the hint: reuse for timeout minus its threshold,
    # stored in the Client that carried the requests
    for r in results:
        assert r["window_ms"] == window, what
        assert window in [c["window_ms"] for c in r["undici"]], what
    connects = [e for e in out["events"] if e["type"] == "connect"]
    assert len(connects) == 1, "expected one connection for all\n" + what
    # undici's own idle timer ended the connection, the server never did
    assert server_closes(out) == [], (
        "the server closed a connection undici still counted as reusable\n"
        + what)
    closes = [e for e in out["events"] if e["type"] == "disconnect"]
    assert len(closes) == 1, what
    assert closes[0]["t"] >= results[-1]["end"] + window - 100, what
    entries = log_entries(run["server"], run["mark"], 3)
    assert list(connections(entries).values()) == [[0, 1, 2]], (
        describe_node(run, entries))
    assert [e["conn"] for e in entries] == ["+"] * 3, describe_log(entries)


def test_node_fetch_spaced_just_under_the_hint_reconnects_cleanly(node_runs):
    run = node_runs["near-hint"]
    out = node_run_ok(run)
    what = describe_node(run)
    window = TIMEOUT * 1000 - out["threshold_ms"]
    first, second = out["results"]
    gap = second["start"] - first["end"]
    assert TIMEOUT * 1000 - 600 <= gap < TIMEOUT * 1000, what
    # undici dropped the idle connection itself when its window ran out,
    # and opened a new one: no request ever raced the server's close
    assert server_closes(out) == [], what
    connects = [e for e in out["events"] if e["type"] == "connect"]
    assert len(connects) == 2, what
    closes = [e for e in out["events"] if e["type"] == "disconnect"]
    assert closes and first["end"] + window - 100 <= closes[0]["t"] \
        <= second["start"], what
    entries = log_entries(run["server"], run["mark"], 2)
    assert sorted(connections(entries).values()) == [[0], [0]], (
        describe_node(run, entries))


def test_node_fetch_trusting_the_hint_fully_reuses_up_to_it(node_runs):
    # A client that believes the hint to the letter reuses the connection
    # half a second before the advertised timeout: the server must still
    # hold it.
    run = node_runs["trusting"]
    out = node_run_ok(run)
    what = describe_node(run)
    assert out["threshold_ms"] == 0, what
    first, second = out["results"]
    assert first["window_ms"] == TIMEOUT * 1000, what
    assert TIMEOUT * 1000 in [c["window_ms"] for c in first["undici"]], what
    assert second["start"] - first["end"] >= TIMEOUT * 1000 - 600, what
    assert server_closes(out) == [], (
        "the server closed the connection before the advertised timeout\n"
        + what)
    assert len([e for e in out["events"] if e["type"] == "connect"]) == 1, what
    entries = log_entries(run["server"], run["mark"], 2)
    assert list(connections(entries).values()) == [[0, 1]], (
        describe_node(run, entries))


def test_node_fetch_never_sees_the_server_close_before_the_hint(node_runs):
    # INHERITING_VHOST: the hint must be what the server enforces, so that
    # undici's window (hint minus threshold) never outlasts the server's
    # wait; a server that closes first is where "other side closed" /
    # ECONNRESET come from once a request is sent at the wrong moment.
    run = node_runs["vhost"]
    out = node_run_ok(run)
    print("advertised: %s; undici's windows: %s ms; connections: %d" % (
        [r["keep_alive"] for r in out["results"]],
        [r["window_ms"] for r in out["results"]],
        len([e for e in out["events"] if e["type"] == "connect"])))
    assert server_closes(out) == [], (
        "the server closed an idle connection that undici still counted as "
        "reusable by the Keep-Alive hint it was given\n" + describe_node(run))
    entries = log_entries(run["server"], run["mark"], 2)
    assert len(entries) == 2, describe_node(run, entries)
