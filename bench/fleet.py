"""A fleet of httpd behind HAProxy (issue 16): does KeepAliveMaxLifetime
rebalance long-lived connections onto a backend added to scale out, and
which timeout ordering avoids the balancer's reuse race?

Everything runs on 127.0.0.1: Debian's haproxy (/usr/sbin/haproxy, run in
the foreground as our child, with a configuration this script generates)
in front of 2 or 3 httpd (tests/harness/httpd.py's HttpdServer, Debian's
apache2, --mpm event by default). Each backend adds
"Header always set X-Backend bN", so every response names the backend that
served it. The clients are one asyncio load generator in this process,
speaking HTTP/1.1 over raw sockets. Every server and haproxy is stopped,
whatever happens, and every loop is bounded by the run's length.

Part L4, "rebalance" (HAProxy mode tcp, balance roundrobin by default):
--clients keep-alive clients (30) each send GET /index.html every 50-100 ms
(--interval; a fixed interval per client, drawn from a seeded generator), over one
connection each, through the balancer; on "Connection: close" the client
opens a new connection for its next request (a reconnection). The clients
arrive spread evenly over the first --lifetime seconds, so that connection
ages are spread as in a fleet in steady state. Backends b1 and b2 serve;
b3 runs from the start but is in HAProxy's configuration as "disabled"
(maintenance) and is enabled --lifetime + 2 s after the start with the
runtime API ("set server be/b3 state ready" on the stats socket). Run for
1.1 x lifetime + idle timeout after that, plus 0.5 s. Roundrobin sends
new connections to the three servers in turn whatever each already holds,
as IPVS rr and cloud NLBs' flow hashing do; --balance leastconn sends them
to the least loaded one (faster to rebalance, so roundrobin is the harder
case for the target).

Part L4, "herd": the same clients all arrive within their first interval,
as after a balancer restart, with b1 and b2 only, for 2.2 x lifetime + 2 s:
the reconnections of connections opened together, with and without
KeepAliveMaxLifetimeJitter.

Configurations of both L4 parts (all KeepAliveTimeout --idle, 5 s):

  core-0      core httpd, MaxKeepAliveRequests 0: never rebalances
  core-100    core httpd, MaxKeepAliveRequests 100 (the default): a client
              reconnects every 101 requests
  module      mod_keepalive, MaxKeepAliveRequests 0,
              KeepAliveMaxLifetime --lifetime (jitter: the default, 10%)
  module-j0   the same with KeepAliveMaxLifetimeJitter 0

Reported: the new backend's share of the requests in the 10 s window that
ends 1.1 x lifetime + idle timeout after it was enabled, against its fair
share (1/3; target: at least 80% with the module); its share per 2 s; and
the reconnections, in total and their peak per 100 ms and per second.

Part L7, "race" (HAProxy mode http, "http-reuse always", one thread): a
server connection HAProxy keeps idle in its pool is reused for a request
just as httpd closes it at its KeepAliveTimeout. httpd then discards the
request (lingering close) and HAProxy sees the connection close without a
response: a 502 (logged, status 502, termination state "SH") for the first
request of a client connection, and for later ones a silent close of the
client connection (HAProxy 2.6 http_ana.c "abort_keep_alive": the client is
expected to retry; nothing is logged). --l7-clients clients (16) send in
rounds: all send one request (within 2 ms), then the round
waits a gap after the round's last response, drawn evenly from the
backend's KeepAliveTimeout - 20 ms to + 10 ms (--l7-early, --l7-late), so
that HAProxy's idle server connections are reused at about the
moment httpd closes them. HAProxy's client-side "timeout http-keep-alive"
is longer than any gap, so clients keep their connections to HAProxy.
A request fails when its response is not a 2xx or when the connection
closes without a response (no retry). --l7-rounds rounds (40).

  core         core httpd, KeepAliveTimeout 1, HAProxy's defaults
               (pool-purge-delay 5s)
  module       mod_keepalive, the same timeouts
  module-rec   mod_keepalive, the ordering recommended in
               docs/directives.md: HAProxy closes its idle server
               connections before httpd would (pool-purge-delay 250ms,
               KeepAliveTimeout 3, the gaps around 3 s)

HAProxy 2.6 has no idle timeout for server connections ("timeout
http-keep-alive" is the client side's, "timeout server" does not apply to
idle ones): the pool keeps them until the server closes them, or until the
purge, which every pool-purge-delay closes half of those not needed in the
last period, the longest idle first. So the ordering is the backend's
KeepAliveTimeout against pool-purge-delay, not against a timeout.

Reported per configuration: requests, failures (non-2xx, closed without a
response), HAProxy's log lines with a 5xx or a termination state other than
"--", and the share of requests that reached httpd on a reused server
connection (%k in the access logs).
"""

import argparse
import asyncio
import os
import random
import re
import sys
import time
from pathlib import Path

from bench.adaptive import foreign_activity, wait_until_quiet
from tests.harness.cli import command_line, comma_choices, prog
from tests.harness.haproxy import HAPROXY_BIN, Haproxy, tcp_balancer_config
from tests.harness.httpd import CRASH_RE, DEFAULT_MODULE, HttpdServer

SCENARIOS = ("rebalance", "herd", "race")
L4_CONFIGS = ("core-0", "core-100", "module", "module-j0")
L7_CONFIGS = ("core", "module", "module-rec")
MPMS = ("prefork", "worker", "event")
WINDOW = 10.0          # seconds: the target's window
BIN = 2.0              # seconds: the shares-over-time table
REQUEST = (b"GET /index.html HTTP/1.1\r\nHost: fleet.test\r\n"
           b"User-Agent: bench-fleet\r\n\r\n")
IO_TIMEOUT = 5.0
# HAProxy's httplog, raw: '... fe be/b1 0/0/0/0/0 200 262 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"'
HTTPLOG_RE = re.compile(r" (\S+)/(\S+) (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/\+?(-?\d+) "
                        r"(-?\d+) \+?\d+ \S+ \S+ (\S{4}) ")


# -- HAProxy ---------------------------------------------------------------
def l7_haproxy_config(ports, purge_delay):
    purge = ("    default-server pool-purge-delay %s\n" % purge_delay
             if purge_delay else "")
    servers = "\n".join("    server b%d 127.0.0.1:%d" % (i, p)
                        for i, p in enumerate(ports, 1))
    return """\
global
    nbthread 1
    stats socket @SOCK@ mode 600 level admin
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 30s
    http-reuse always
frontend fe
    bind 127.0.0.1:@PORT@
    default_backend be
backend be
    balance roundrobin
%s%s
""" % (purge, servers)


# -- backends ----------------------------------------------------------------
def backend(name, mpm, module, idle, max_requests, directives=""):
    extra = 'Header always set X-Backend %s\n' % name
    if module is not None:
        extra += directives
    return HttpdServer(mpm, module, keepalive=("On", idle, str(max_requests)),
                       extra_config=extra, name="fleet-%s" % name)


def l4_backends(config, args):
    idle = "%g" % args.idle
    lifetime = ("KeepAliveMaxLifetime %gs\n" % args.lifetime)
    spec = {
        "core-0": (None, 0, ""),
        "core-100": (None, 100, ""),
        "module": (args.module, 0, lifetime),
        "module-j0": (args.module, 0, lifetime + "KeepAliveMaxLifetimeJitter 0\n"),
    }[config]
    return [backend("b%d" % i, args.mpm, spec[0], idle, spec[1], spec[2])
            for i in (1, 2, 3)]


# Per L7 configuration: module?, KeepAliveTimeout (s), HAProxy pool-purge-delay
L7_SPEC = {
    "core": (False, 1.0, None),
    "module": (True, 1.0, None),
    "module-rec": (True, 3.0, "250ms"),
}


# -- clients -----------------------------------------------------------------
class Record:
    def __init__(self):
        self.requests = []      # (t, backend, status)
        self.reconnects = []    # t
        self.failures = []      # (t, kind)
        self.connects = 0


async def read_response(reader):
    """(status, headers dict lower-cased) of one response, body read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return status, headers


async def open_conn(port):
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                  IO_TIMEOUT)


def close_conn(writer):
    if writer is not None:
        writer.close()


async def exchange(reader, writer):
    writer.write(REQUEST)
    await writer.drain()
    return await asyncio.wait_for(read_response(reader), IO_TIMEOUT)


async def steady_client(port, t0, start, interval, stop, rec):
    """Sends every ``interval`` s from ``start`` until ``stop`` (seconds
    after t0), over one connection at a time."""
    loop = asyncio.get_running_loop()
    reader = writer = None
    next_send = start
    try:
        while True:
            delay = t0 + next_send - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time() - t0
            if now >= stop:
                return
            try:
                if writer is None:
                    reader, writer = await open_conn(port)
                    rec.connects += 1
                    if rec.connects > 1:
                        rec.reconnects.append(now)
                status, headers = await exchange(reader, writer)
                rec.requests.append((now, headers.get("x-backend", "?"), status))
                if "close" in headers.get("connection", "").lower():
                    close_conn(writer)
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    ValueError, IndexError) as e:
                rec.failures.append((now, type(e).__name__))
                close_conn(writer)
                reader = writer = None
            # a fixed rate: no burst to catch up after a slow response
            next_send = max(next_send + interval, loop.time() - t0)
    finally:
        close_conn(writer)


async def run_steady(port, clients, stop, on_time=None):
    """``clients``: [(start, interval)]; ``on_time``: (t, coroutine fn)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    recs = [Record() for _ in clients]
    tasks = [asyncio.create_task(steady_client(port, t0, s, i, stop, r))
             for (s, i), r in zip(clients, recs)]
    event = {}
    if on_time is not None:
        at, fn = on_time
        await asyncio.sleep(max(0.0, t0 + at - loop.time()))
        event["t"] = loop.time() - t0
        event["result"] = await loop.run_in_executor(None, fn)
    await asyncio.wait_for(asyncio.gather(*tasks), stop + 2 * IO_TIMEOUT + 5)
    return recs, event


async def race_client(port, rec, state):
    """One request per round, on a kept connection to HAProxy."""
    reader, writer = state.get("conn", (None, None))
    now = asyncio.get_running_loop().time() - state["t0"]
    try:
        if writer is not None and reader.at_eof():
            # HAProxy closed it while we were idle: not a failure
            close_conn(writer)
            reader = writer = None
        if writer is None:
            reader, writer = await open_conn(port)
            rec.connects += 1
        status, headers = await exchange(reader, writer)
        rec.requests.append((now, headers.get("x-backend", "?"), status))
        if not 200 <= status < 300:
            rec.failures.append((now, "status %d" % status))
        if "close" in headers.get("connection", "").lower():
            close_conn(writer)
            reader = writer = None
    except asyncio.IncompleteReadError as e:
        rec.failures.append((now, "closed without response" if not e.partial
                             else "truncated response"))
        close_conn(writer)
        reader = writer = None
    except (OSError, asyncio.TimeoutError, ValueError, IndexError) as e:
        rec.failures.append((now, type(e).__name__))
        close_conn(writer)
        reader = writer = None
    state["conn"] = (reader, writer)


async def run_race(port, n, max_rounds, gap_lo, gap_hi, rng):
    """Rounds: all ``n`` clients send at once (within 2 ms), then a gap
    from the round's last response, drawn evenly from [gap_lo, gap_hi]."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    recs = [Record() for _ in range(n)]
    states = [{"t0": t0} for _ in range(n)]
    rounds = 0

    async def delayed(i):
        await asyncio.sleep(rng.uniform(0.0, 0.002))
        await race_client(port, recs[i], states[i])

    try:
        while rounds < max_rounds:
            rounds += 1
            await asyncio.wait_for(asyncio.gather(*(delayed(i) for i in range(n))),
                                   2 * IO_TIMEOUT + 5)
            await asyncio.sleep(rng.uniform(gap_lo, gap_hi))
    finally:
        for s in states:
            close_conn(s.get("conn", (None, None))[1])
    return recs, rounds


# -- analysis ----------------------------------------------------------------
def merged(recs, attr):
    return sorted(x for r in recs for x in getattr(r, attr))


def share(requests, lo, hi, name):
    inside = [b for t, b, _ in requests if lo <= t < hi]
    return (sum(1 for b in inside if b == name) / len(inside)) if inside else None, len(inside)


def peak(times, width):
    if not times:
        return 0
    counts = {}
    for t in times:
        k = int(t // width)
        counts[k] = counts.get(k, 0) + 1
    return max(counts.values())


def reused_share(servers):
    ka = [int(m) for s in servers for m in re.findall(r" ka=(\d+) ", s.access_log())]
    return (sum(1 for k in ka if k > 0) / len(ka)) if ka else None, len(ka)


def haproxy_errors(log_text):
    """(logged requests, lines with a 5xx or a termination state not '--')."""
    logged, bad = 0, []
    for line in log_text.splitlines():
        m = HTTPLOG_RE.search(line)
        if not m:
            continue
        logged += 1
        status, term = int(m.group(8)), m.group(9)
        if status >= 500 or status < 0 or term[:2] != "--":
            bad.append(line.strip())
    return logged, bad


# -- runs --------------------------------------------------------------------
def stop_all(servers, proxy, res):
    problems = []
    if proxy is not None:
        proxy.stop()
    for s in servers:
        try:
            problems += s.stop()
        except AssertionError as e:
            problems.append(str(e))
        text = s.error_log()
        problems += [l for l in text.splitlines() if CRASH_RE.search(l)]
    res["problems"] = problems
    keep = bool(problems) or bool(os.environ.get("KEEP_HTTPD_DIRS"))
    for s in servers:
        if keep:
            res.setdefault("dirs", []).append(str(s.dir))
        else:
            s.cleanup()
    if proxy is not None:
        if keep:
            res.setdefault("dirs", []).append(str(proxy.dir))
        else:
            proxy.cleanup()


def client_plan(args, herd, rng):
    plan = []
    for i in range(args.clients):
        interval = rng.uniform(*args.interval)
        if herd:
            start = rng.uniform(0.0, interval)
        else:
            start = i * args.lifetime / args.clients + rng.uniform(0.0, interval)
        plan.append((start, interval))
    return plan


def run_l4(scenario, config, args):
    rng = random.Random(args.seed)
    herd = scenario == "herd"
    servers = l4_backends(config, args)
    if herd:
        servers = servers[:2]
    res = {"scenario": scenario, "config": config}
    proxy = None
    try:
        for s in servers:
            s.start()
        ports = [s.port for s in servers]
        proxy = Haproxy(tcp_balancer_config(ports, args.balance),
                        "%s-%s" % (scenario, config)).start()
        res["foreign"] = len(foreign_activity())
        plan = client_plan(args, herd, rng)
        if herd:
            stop = 2.2 * args.lifetime + 2.0
            recs, event = asyncio.run(run_steady(proxy.port, plan, stop))
        else:
            add_at = args.lifetime + 2.0
            stop = add_at + 1.1 * args.lifetime + args.idle + 0.5
            recs, event = asyncio.run(run_steady(
                proxy.port, plan, stop,
                (add_at, lambda: proxy.runtime("set server be/b3 state ready"))))
            res["add_t"] = event["t"]
            res["add_answer"] = event["result"].strip()
        res["requests"] = merged(recs, "requests")
        res["reconnects"] = merged(recs, "reconnects")
        res["failures"] = merged(recs, "failures")
        res["stop"] = stop
        res["foreign"] += len(foreign_activity())
    finally:
        stop_all(servers, proxy, res)
    return res


def run_l7(config, args):
    rng = random.Random(args.seed)
    use_module, idle, purge = L7_SPEC[config]
    servers = [backend("b%d" % i, args.mpm, args.module if use_module else None,
                       "%g" % idle, 100) for i in (1, 2)]
    res = {"scenario": "race", "config": config, "idle": idle, "purge": purge}
    proxy = None
    try:
        for s in servers:
            s.start()
        proxy = Haproxy(l7_haproxy_config([s.port for s in servers], purge),
                        "race-%s" % config).start()
        res["foreign"] = len(foreign_activity())
        recs, rounds = asyncio.run(run_race(
            proxy.port, args.l7_clients, args.l7_rounds,
            idle - args.l7_early, idle + args.l7_late, rng))
        res["rounds"] = rounds
        res["requests"] = merged(recs, "requests")
        res["failures"] = merged(recs, "failures")
        time.sleep(0.3)            # let haproxy write its last log lines
        res["logged"], res["log_errors"] = haproxy_errors(proxy.log())
        res["reused"], res["backend_requests"] = reused_share(servers)
        res["foreign"] += len(foreign_activity())
    finally:
        stop_all(servers, proxy, res)
    return res


# -- tables ------------------------------------------------------------------
def pct(x):
    return "-" if x is None else "%.0f%%" % (100 * x)


def render_l4(results, args):
    out = []
    reb = [r for r in results if r["scenario"] == "rebalance"]
    if reb:
        lo_w = 1.1 * args.lifetime + args.idle - WINDOW
        hi_w = 1.1 * args.lifetime + args.idle
        out += ["#### L4 rebalancing: %d clients each sending every %g-%g s, HAProxy "
                "mode tcp, balance %s; b3 enabled at +0 s; window +%g to +%g s" % (
                    args.clients, args.interval[0], args.interval[1],
                    args.balance, lo_w, hi_w), "",
                "| config | requests | b3 share in window | / fair share (1/3) | "
                "target >= 80% | reconnections | peak reconnections per 100 ms "
                "| per s | failed requests |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in reb:
            add = r["add_t"]
            s, _n = share(r["requests"], add + lo_w, add + hi_w, "b3")
            fair = None if s is None else 3 * s
            r["fair"] = fair
            target = ("-" if not r["config"].startswith("module") else
                      ("met" if fair is not None and fair >= 0.8 else "**not met**"))
            out.append("| %s%s | %d | %s | %s | %s | %d | %d | %d | %d |" % (
                r["config"], " (*)" if r["foreign"] else "", len(r["requests"]),
                pct(s), pct(fair), target, len(r["reconnects"]),
                peak(r["reconnects"], 0.1), peak(r["reconnects"], 1.0),
                len(r["failures"])))
        edges = [x * BIN for x in range(int(-4 / BIN),
                                        int((hi_w + BIN - 1e-9) // BIN) + 1)]
        out += ["", "b3's share of requests per %g s, from when it was enabled "
                "(fair share: 33%%):" % BIN, "",
                "| config | " + " | ".join("%+g..%+g" % (a, a + BIN)
                                          for a in edges[:-1]) + " |",
                "| --- |" + " --- |" * (len(edges) - 1)]
        for r in reb:
            add = r["add_t"]
            out.append("| %s | %s |" % (r["config"], " | ".join(
                pct(share(r["requests"], add + a, add + a + BIN, "b3")[0])
                for a in edges[:-1])))
        out.append("")
    herd = [r for r in results if r["scenario"] == "herd"]
    if herd:
        out += ["#### L4 herd: %d clients connecting together, b1 and b2, "
                "%.0f s" % (args.clients, herd[0]["stop"]), "",
                "| config | requests | reconnections | peak reconnections per "
                "100 ms | per s | failed requests |",
                "| --- | --- | --- | --- | --- | --- |"]
        for r in herd:
            out.append("| %s%s | %d | %d | %d | %d | %d |" % (
                r["config"], " (*)" if r["foreign"] else "", len(r["requests"]),
                len(r["reconnects"]), peak(r["reconnects"], 0.1),
                peak(r["reconnects"], 1.0), len(r["failures"])))
        out.append("")
    return out


def render_l7(results, args):
    race = [r for r in results if r["scenario"] == "race"]
    if not race:
        return []
    out = ["#### L7 reuse race: %d clients in rounds, HAProxy mode http, "
           "http-reuse always, %d rounds per configuration" % (
               args.l7_clients, args.l7_rounds), "",
           "| config | KeepAliveTimeout | pool-purge-delay | gaps | rounds | "
           "requests | failed | of which 5xx | closed without response | "
           "HAProxy log: 5xx or abort | reused server connections |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in race:
        kinds = [k for _, k in r["failures"]]
        out.append("| %s%s | %gs | %s | %.2f-%.2f s | %d | %d | %d | %d | %d | "
                   "%d | %s |" % (
                       r["config"], " (*)" if r["foreign"] else "", r["idle"],
                       r["purge"] or "5s (default)", r["idle"] - args.l7_early,
                       r["idle"] + args.l7_late, r["rounds"],
                       len(r["requests"]), len(r["failures"]),
                       sum(1 for k in kinds if k.startswith("status 5")),
                       sum(1 for k in kinds if k == "closed without response"),
                       len(r["log_errors"]), pct(r["reused"])))
    out.append("")
    for r in race:
        for line in r["log_errors"][:5]:
            out.append("- %s, HAProxy log: `%s`" % (r["config"], line[:250]))
        others = sorted({k for _, k in r["failures"]}
                        - {"closed without response"})
        if others:
            out.append("- %s, failure kinds: %s" % (r["config"], ", ".join(others)))
    out.append("")
    return out


def render(results, args, command):
    out = render_l4(results, args) + render_l7(results, args)
    if any(r["foreign"] for r in results):
        out += ["(*): another pytest or apache2 process ran at the start or "
                "end of that run.", ""]
    for r in results:
        for p in r["problems"]:
            out.append("- %s/%s: `%s`" % (r["scenario"], r["config"], p[:300]))
        for d in r.get("dirs", []):
            out.append("- %s/%s: directory kept: %s" % (r["scenario"], r["config"], d))
    out += ["Command: `%s`" % command]
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(
        prog=prog(), description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--configs", default=",".join(L4_CONFIGS),
                   help="L4 configurations (rebalance, herd)")
    p.add_argument("--l7-configs", default=",".join(L7_CONFIGS))
    p.add_argument("--mpm", choices=MPMS, default="event")
    p.add_argument("--clients", type=int, default=30)
    p.add_argument("--lifetime", type=float, default=10.0,
                   help="KeepAliveMaxLifetime, seconds")
    p.add_argument("--idle", type=float, default=5.0,
                   help="KeepAliveTimeout of the L4 backends, seconds")
    p.add_argument("--interval", default="0.05,0.1",
                   help="L4 clients: each sends every LO to HI seconds (LO,HI)")
    p.add_argument("--balance", choices=("roundrobin", "leastconn"),
                   default="roundrobin")
    p.add_argument("--l7-clients", type=int, default=16)
    p.add_argument("--l7-rounds", type=int, default=40)
    p.add_argument("--l7-early", type=float, default=0.02,
                   help="L7 gaps: from KeepAliveTimeout - this, seconds")
    p.add_argument("--l7-late", type=float, default=0.01,
                   help="L7 gaps: to KeepAliveTimeout + this, seconds")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    p.add_argument("--wait-quiet", type=float, default=120,
                   help="before each run, wait up to this many seconds for "
                        "other pytest/apache2 processes to end (0: do not wait)")
    p.add_argument("--markdown", help="also write the tables here")
    args = p.parse_args()
    scenarios = comma_choices(p, args.scenarios, SCENARIOS, "scenario")
    try:
        args.interval = tuple(float(x) for x in args.interval.split(","))
        if len(args.interval) != 2 or not 0.001 <= args.interval[0] <= args.interval[1] <= 60:
            raise ValueError
    except ValueError:
        p.error("--interval: LO,HI seconds, 0.001 <= LO <= HI <= 60")
    configs = comma_choices(p, args.configs, L4_CONFIGS, "config")
    l7_configs = comma_choices(p, args.l7_configs, L7_CONFIGS, "L7 config")
    if not os.access(HAPROXY_BIN, os.X_OK):
        p.error("%s not found (Debian package haproxy)" % HAPROXY_BIN)
    args.module = Path(args.module).resolve()
    if not args.module.is_file():
        p.error("%s is not built (run make)" % args.module)
    if not 1 <= args.clients <= 500 or not 1 <= args.l7_clients <= 500:
        p.error("--clients and --l7-clients: 1 to 500")
    if args.lifetime <= 0 or args.idle <= 0 or not 1 <= args.l7_rounds <= 10000:
        p.error("--lifetime and --idle must be above 0, --l7-rounds 1 to 10000")

    command = command_line()
    runs = [(s, c) for s in scenarios if s != "race" for c in configs]
    if "race" in scenarios:
        runs += [("race", c) for c in l7_configs]
    results = []
    for scenario, config in runs:
        if args.wait_quiet > 0:
            quiet, note = wait_until_quiet(args.wait_quiet, 10.0)
            if not quiet:
                print("  " + note, flush=True)
        if scenario == "race":
            r = run_l7(config, args)
            print("%-9s %-10s requests %d, failed %d, HAProxy log errors %d, "
                  "reused %s" % (scenario, config, len(r["requests"]),
                                 len(r["failures"]), len(r["log_errors"]),
                                 pct(r["reused"])), flush=True)
        else:
            r = run_l4(scenario, config, args)
            print("%-9s %-10s requests %d, reconnections %d, failed %d%s" % (
                scenario, config, len(r["requests"]), len(r["reconnects"]),
                len(r["failures"]),
                (", runtime API: %r" % r["add_answer"]) if "add_answer" in r
                else ""), flush=True)
        results.append(r)
    table = render(results, args, command)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    ok = not any(r["problems"] for r in results)
    for r in results:
        if r["scenario"] == "rebalance" and r["config"].startswith("module"):
            ok = ok and (r.get("fair") or 0) >= 0.8
        if r["scenario"] == "race" and r["config"] == "module-rec":
            ok = ok and not r["failures"] and not r["log_errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
