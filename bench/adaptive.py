"""Side-by-side benchmark of load-adaptive keep-alive (run it as bench/run).

The scenario of the issue: "thinking" clients that send a request, think
1 s and send the next one on the same connection (wrk with bench/thinker.lua),
while fresh clients open a new connection for every request (ab -c8: HTTP/1.0
without keep-alive). Under each MPM (prefork, worker, event; 32 workers each)
three configurations are compared:

  on        core httpd alone: KeepAlive On, KeepAliveTimeout 5,
            MaxKeepAliveRequests 100 (mod_keepalive not loaded)
  off       core httpd alone: KeepAlive Off (mod_keepalive not loaded)
  adaptive  mod_keepalive loaded, the same KeepAlive On / 5 / 100, plus
            KeepAliveAdaptive On with --thresholds, --floor and --interval

(--variant adds more adaptive settings as extra rows), in two scenarios:
"saturated" (64 thinkers: twice the workers) and "unsaturated" (8 thinkers).

Every run is one fresh server:

  t=0      wrk starts the thinkers (the first request of each is spread over
           the first think time)
  t=W      (warm-up, 3 s) ab -c8 -t D starts; the access log offset is noted
  t=W+D    ab is done; the access log offset is noted again: the requests
           logged in between are the measurement window; wrk is stopped
           (SIGINT: it prints its statistics, so thinker latency covers
           [0, W+D])
  then     a second wrk brings the thinkers back (not measured) and, after
           1.5 s, h2load --h1 -c8 -n N measures returning clients that keep
           their connection as long as the server lets them

Connection reuse is counted exactly from the server's access log: the
harness's LogFormat has %k, the number of earlier requests on the same
connection, so in the window, reuse = thinker requests with %k > 0 / all
thinker requests (the same for h2load's requests). It counts every new
connection, whatever closed the old one (Connection: close, an idle timeout,
or event's listener).

The host is noisy (a 2-core VM), so each configuration runs --repeat times,
the configurations of one MPM and scenario interleaved round by round; the
tables show the median of the rounds, and the targets are also checked round
by round (adaptive against the Off run of the same round).

The servers are tests/harness/httpd.py's HttpdServer, imported; the MPM
sizing is appended to its configuration (the last value of each MPM
directive wins).
"""

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness.cli import command_line, prog
from tests.harness.httpd import DEFAULT_MODULE, HttpdServer, pgid_members

BENCH_DIR = Path(__file__).resolve().parent
THINKER_LUA = BENCH_DIR / "thinker.lua"

MPMS = ("prefork", "worker", "event")
BASE_CONFIGS = ("on", "off", "adaptive")
SCENARIOS = {"saturated": 64, "unsaturated": 8}
FRESH_CLIENTS = 8
WRK_THREADS = 2

# 32 workers under every MPM, all started up front and never stopped, so
# that process or thread spawning does not confound the comparison. Worker
# and event: --processes processes of 32/processes threads (default 2 x 16).
# (bench/pool_sizes.py sizes other pools with the same templates.)
WORKERS = 32
PREFORK_SIZING = """\
StartServers {workers}
MinSpareServers {workers}
MaxSpareServers {workers}
ServerLimit {workers}
MaxRequestWorkers {workers}
"""
THREADED_SIZING = """\
StartServers {processes}
ServerLimit {processes}
ThreadLimit {threads}
ThreadsPerChild {threads}
MinSpareThreads 1
MaxSpareThreads {max_spare}
MaxRequestWorkers {workers}
"""


def mpm_sizing(mpm, processes=2, workers=WORKERS):
    if mpm == "prefork":
        return PREFORK_SIZING.format(workers=workers)
    threads = workers // processes
    return THREADED_SIZING.format(processes=processes, threads=threads,
                                  max_spare=max(workers, threads + 1),
                                  workers=workers)

# The same small page under three names, so that the access log tells the
# thinkers' requests (/think.html), ab's (/fresh.html) and h2load's
# (/h2load.html) apart.
PAGE = (b"<!DOCTYPE html>\n<html><head><title>bench</title></head><body>\n"
        + b"<p>" + b"x" * 480 + b"</p>\n</body></html>\n")
FILES = {"htdocs/%s.html" % name: PAGE
         for name in ("think", "fresh", "h2load")}

STATUS_CONFIG = """\
<Location "/keepalive-status">
    SetHandler keepalive-status
</Location>
"""

LOG_RE = re.compile(r'"GET /(think|fresh|h2load)\.html HTTP/1\.[01]" (\d{3}) '
                    r'\S+ ka=(\d+)')


# -- configurations ----------------------------------------------------------
def adaptive_config(name, thresholds, floor, interval, module=None):
    label = "%s (%s, floor %s, every %s%s)" % (
        name, thresholds, floor, interval,
        ", module %s" % module if module else "")
    return {"name": name, "module": True, "keepalive": ("On", "5", "100"),
            "adaptive": (thresholds, floor, interval), "label": label,
            "module_path": Path(module).resolve() if module else None}


def make_configs(args):
    out = []
    for name in args.configs:
        if name == "on":
            out.append({"name": "on", "module": False, "label": "on",
                        "keepalive": ("On", "5", "100"), "adaptive": None})
        elif name == "off":
            out.append({"name": "off", "module": False, "label": "off",
                        "keepalive": ("Off", "5", "100"), "adaptive": None})
        else:
            out.append(adaptive_config("adaptive", args.thresholds,
                                       args.floor, args.interval))
    for i, v in enumerate(args.variant, 1):
        parts = v.split("|")
        if len(parts) not in (3, 4):
            raise SystemExit("--variant wants 'SHRINK% CLOSE%|FLOOR|INTERVAL'"
                             "[|MODULE.so], got %r" % v)
        out.append(adaptive_config("variant%d" % i, *parts))
    return out


# -- helpers -----------------------------------------------------------------
def ms(us):
    return None if us is None else us / 1000.0


def foreign_activity(own_pgid=None):
    """Other engineers' pytest and apache2 processes (not our server)."""
    out = subprocess.run(["pgrep", "-af", "pytest|apache2"],
                         capture_output=True, text=True).stdout
    own = set(pgid_members(own_pgid)) if own_pgid else set()
    lines = []
    for line in out.splitlines():
        pid = int(line.split()[0])
        if pid == os.getpid() or pid in own or "pgrep" in line:
            continue
        lines.append(line)
    return lines


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_until_quiet(max_wait, every, load_threshold=None):
    """Bounded wait until no other pytest or apache2 process runs (and, if
    ``load_threshold`` is given, the 1-minute load is below it). Returns
    (quiet, description)."""
    deadline = time.monotonic() + max_wait
    while True:
        load, others = loadavg(), foreign_activity()
        if not others and (load_threshold is None or load < load_threshold):
            return True, "quiet (load %.2f, no other pytest/apache2)" % load
        if time.monotonic() >= deadline:
            return False, ("NOT quiet after waiting %.0f s: load %.2f, %d other "
                           "pytest/apache2 processes" % (max_wait, load,
                                                        len(others)))
        print("  waiting for a quiet machine: load %.2f, %d other "
              "pytest/apache2 processes" % (load, len(others)), flush=True)
        time.sleep(min(every, max(1.0, deadline - time.monotonic())))


def parse_ab(text, csv_path, seconds):
    """ab's report: requests/s, failures, p50/p99 (from -e csv), max."""
    res = {"ok": False, "complete": 0}
    m = re.search(r"^Complete requests:\s+(\d+)", text, re.M)
    if m:
        res["complete"] = int(m.group(1))
    else:
        m = re.search(r"Total of (\d+) requests completed", text)
        if m:
            res["complete"] = int(m.group(1))
    m = re.search(r"^Requests per second:\s+([\d.]+)", text, re.M)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"^Failed requests:\s+(\d+)", text, re.M)
    res["failed"] = int(m.group(1)) if m else None
    m = re.search(r"^Non-2xx responses:\s+(\d+)", text, re.M)
    res["non2xx"] = int(m.group(1)) if m else 0
    longest = re.search(r"^\s*100%\s+(\d+)", text, re.M)
    res["max_ms"] = float(longest.group(1)) if longest else None
    pct = {}
    if csv_path.exists():
        with open(csv_path) as f:
            for row in csv.reader(f):
                if row and row[0].isdigit():
                    pct[int(row[0])] = float(row[1])
    res["p50_ms"] = pct.get(50)
    res["p99_ms"] = pct.get(99)
    res["ok"] = res["rps"] is not None and longest is not None and 99 in pct
    return res


def parse_wrk(text):
    m = re.search(r"^THINKER (.*)$", text, re.M)
    if not m:
        return {"ok": False}
    res = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", m.group(1))}
    res["ok"] = True
    return res


def parse_h2load(text):
    res = {"ok": False}
    m = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text)
    if m:
        res["rps"] = float(m.group(3))
        res["ok"] = True
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                  r"(\d+) succeeded, (\d+) failed, (\d+) errored", text)
    if m:
        res["done"], res["failed"] = int(m.group(3)), int(m.group(5))
    m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
                  r"\s+([\d.]+)(us|ms|s)", text)
    if m:
        unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        res["min_ms"] = float(m.group(1)) * unit[m.group(2)]
        res["max_ms"] = float(m.group(3)) * unit[m.group(4)]
        res["mean_ms"] = float(m.group(5)) * unit[m.group(6)]
    return res


def log_size(server):
    try:
        return server.access_log_path.stat().st_size
    except FileNotFoundError:
        return 0


def log_window(server, start, end):
    """Requests, reused-connection requests and non-200s per client kind,
    from the access log lines between two byte offsets."""
    with open(server.access_log_path, "rb") as f:
        f.seek(start)
        data = f.read(end - start).decode("latin-1")
    counts = {}
    for who, status, ka in LOG_RE.findall(data):
        c = counts.setdefault(who, {"requests": 0, "reused": 0, "non200": 0})
        c["requests"] += 1
        if int(ka) > 0:
            c["reused"] += 1
        if status != "200":
            c["non200"] += 1
    return counts


def module_counters(server):
    """The whole-server close reasons from /keepalive-status."""
    url = "http://127.0.0.1:%d/keepalive-status" % server.port
    try:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError as e:
        return {"error": str(e)}
    out = {}
    for reason, value in re.findall(
            r'^keepalive_connections_closed_total\{reason="([^"]+)"\} (\d+)$',
            text, re.M):
        out[reason] = int(value)
    for decision, value in re.findall(
            r'^keepalive_responses_total\{decision="(\w+)"\} (\d+)$',
            text, re.M):
        out["responses_" + decision] = int(value)
    return out


# -- one run -----------------------------------------------------------------
def server_for(mpm, config, args):
    extra = mpm_sizing(mpm, args.processes)
    if config["adaptive"]:
        extra += ("KeepAliveAdaptive On\n"
                  "KeepAliveAdaptiveThresholds %s\n"
                  "KeepAliveAdaptiveFloor %s\n"
                  "KeepAliveAdaptiveInterval %s\n" % config["adaptive"])
    if config["module"]:
        extra += STATUS_CONFIG
    module = config.get("module_path") or args.module
    return HttpdServer(mpm, module if config["module"] else None,
                       keepalive=config["keepalive"], extra_config=extra,
                       files=FILES, name="bench-%s" % config["name"])


def start_wrk(base, thinkers, args):
    cmd = ["wrk", "-t%d" % WRK_THREADS, "-c%d" % thinkers, "-d3600s",
           "--timeout", "60s", "-s", str(THINKER_LUA), base + "/think.html",
           "--", str(args.think_ms), str(thinkers // WRK_THREADS)]
    return cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)


def stop_wrk(proc):
    """SIGINT: wrk stops, prints its statistics and runs done()."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def terminate(proc):
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def fresh_window(base, clients, duration, csv_path, logged):
    """ab -c clients -t duration on base/fresh.html (fresh connections, one
    per request): the measurement window. Returns ab's command, its output,
    the window's length in seconds, and for each server in ``logged`` the
    access log offsets (start, end) of the window."""
    ab_cmd = ["ab", "-q", "-r", "-c", str(clients), "-t", str(duration),
              "-n", str(max(50000, 40000 * duration)),
              "-s", str(duration + 5), "-e", str(csv_path),
              base + "/fresh.html"]
    starts = [log_size(s) for s in logged]
    t0 = time.monotonic()
    ab = subprocess.Popen(ab_cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        ab_out, _ = ab.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        ab_out = "ab killed after %d s" % (duration + 60)
    finally:
        terminate(ab)
    window_s = time.monotonic() - t0
    return ab_cmd, ab_out, window_s, [(a, log_size(s))
                                      for a, s in zip(starts, logged)]


def record_clients(res, ab_out, csv_path, wrk_out, duration):
    """ab's and the thinkers' wrk's results into ``res`` (with the tail of
    the output of either when it could not be read)."""
    res["ab"] = parse_ab(ab_out, csv_path, duration)
    res["wrk"] = parse_wrk(wrk_out)
    if not res["wrk"]["ok"]:
        res["wrk"]["output"] = wrk_out[-2000:]
    if not res["ab"]["ok"]:
        res["ab"]["output"] = ab_out[-2000:]


def run_one(mpm, config, scenario, args, workdir, round_no):
    thinkers = SCENARIOS[scenario]
    server = server_for(mpm, config, args)
    server.start()
    tag = "%s-%s-%s-%d" % (mpm, scenario, config["name"], round_no)
    res = {"mpm": mpm, "config": config["name"], "label": config["label"],
           "scenario": scenario, "round": round_no, "thinkers": thinkers,
           "foreign_before": len(foreign_activity(server.pgid))}
    wrk = wrk2 = None
    try:
        base = "http://127.0.0.1:%d" % server.port
        wrk_cmd, wrk = start_wrk(base, thinkers, args)
        time.sleep(args.warmup)

        csv_path = workdir / ("%s-ab.csv" % tag)
        ab_cmd, ab_out, res["window_s"], [(offset_start, offset_end)] = \
            fresh_window(base, FRESH_CLIENTS, args.duration, csv_path, [server])
        wrk_out = stop_wrk(wrk)
        record_clients(res, ab_out, csv_path, wrk_out, args.duration)
        res["log"] = log_window(server, offset_start, offset_end)

        if args.h2load_requests > 0:
            _, wrk2 = start_wrk(base, thinkers, args)
            time.sleep(1.5)
            h2_cmd = ["h2load", "--h1", "-t1", "-c%d" % FRESH_CLIENTS, "-m1",
                      "-n", str(args.h2load_requests), base + "/h2load.html"]
            off0 = log_size(server)
            t1 = time.monotonic()
            try:
                h2 = subprocess.run(h2_cmd, capture_output=True, text=True,
                                    timeout=args.h2load_budget)
                h2_out = h2.stdout + h2.stderr
            except subprocess.TimeoutExpired as e:
                h2_out = ((e.stdout or b"").decode(errors="replace")
                          + "\nh2load stopped after %.0f s" % args.h2load_budget)
            res["h2load"] = parse_h2load(h2_out)
            res["h2load"]["elapsed_s"] = time.monotonic() - t1
            res["h2load"]["log"] = log_window(server, off0, log_size(server)
                                              ).get("h2load", {})
            stop_wrk(wrk2)

        if config["module"]:
            res["module"] = module_counters(server)
        res["commands"] = {"wrk": " ".join(wrk_cmd), "ab": " ".join(ab_cmd)}
    finally:
        terminate(wrk)
        terminate(wrk2)
        stop_server(server, res)
    return res


def stop_server(server, res):
    """Stop a run's server; note in ``res`` whether other pytest or apache2
    processes ran at its end, and the problems of its error log (its
    directory is then kept)."""
    res["foreign_after"] = len(foreign_activity(server.pgid))
    problems = server.stop()
    res["server_problems"] = problems
    if not problems:
        server.cleanup()
    else:
        res["server_dir"] = str(server.dir)


# -- numbers -----------------------------------------------------------------
def values(r):
    """The table's numbers for one run."""
    ab, wrk, log = r["ab"], r.get("wrk", {}), r["log"]
    think = log.get("think", {"requests": 0, "reused": 0})
    h2 = r.get("h2load", {})
    h2log = h2.get("log", {})
    ab_ok, wrk_ok, h2_ok = ab.get("ok"), wrk.get("ok"), h2.get("ok")
    return {
        # a starved ab reports nothing: count what completed in the window
        "fresh_rps": ab["rps"] if ab_ok else ab.get("complete", 0) / r["window_s"],
        "fresh_p50": ab.get("p50_ms") if ab_ok else None,
        "fresh_p99": ab.get("p99_ms") if ab_ok else None,
        "fresh_max": ab.get("max_ms") if ab_ok else None,
        "think_rps": think["requests"] / r["window_s"],
        "think_mean": ms(wrk.get("lat_mean_us")) if wrk_ok else None,
        "think_p50": ms(wrk.get("lat_p50_us")) if wrk_ok else None,
        "think_p99": ms(wrk.get("lat_p99_us")) if wrk_ok else None,
        "think_max": ms(wrk.get("lat_max_us")) if wrk_ok else None,
        "reuse": (100.0 * think["reused"] / think["requests"]
                  if think["requests"] else None),
        "idle_closes": wrk.get("idle_closes") if wrk_ok else None,
        "shed": r.get("module", {}).get("load-shedding"),
        "h2_rps": (h2.get("rps") if h2_ok else
                   h2log.get("requests", 0) / h2["elapsed_s"]) if h2 else None,
        "h2_mean": h2.get("mean_ms") if h2_ok else None,
        "h2_max": h2.get("max_ms") if h2_ok else None,
        "h2_reuse": (100.0 * h2log["reused"] / h2log["requests"]
                     if h2log.get("requests") else None),
        "ab_ok": bool(ab_ok), "h2_ok": bool(h2_ok),
    }


def median_values(runs):
    """Median of each number over the rounds (None where a round had none)."""
    vs = [values(r) for r in runs]
    out = {}
    for key in vs[0]:
        got = [v[key] for v in vs if v[key] is not None]
        if key in ("ab_ok", "h2_ok"):
            out[key] = all(got)
        else:
            out[key] = statistics.median(got) if got else None
    out["rounds"] = len(vs)
    out["ab_starved"] = sum(1 for v in vs if not v["ab_ok"])
    out["h2_starved"] = sum(1 for v in vs if not v["h2_ok"])
    return out


def fmt(value, spec="%.1f", none="-"):
    return none if value is None else spec % value


HEADER = ("| MPM | config | fresh req/s | fresh p50 ms | fresh p99 ms "
          "| fresh max ms | thinker req/s | thinker mean ms | thinker p50 ms "
          "| thinker p99 ms | thinker max ms | reuse % | shed | idle closes |")
H2_HEADER = ("| MPM | config | h2load req/s | h2load mean ms | h2load max ms "
             "| h2load reuse % |")


def separator(header):
    return "|" + " --- |" * (header.count("|") - 1)


def render(results, configs, args, notes):
    group = {}
    for r in results:
        group.setdefault((r["scenario"], r["mpm"], r["config"]), []).append(r)
    lines = ["Adaptive rows: " + "; ".join(
        c["label"] for c in configs if c["adaptive"]) + ".", ""]
    for scenario in args.scenarios:
        lines += ["### %s: %d thinkers (think %d ms) + ab -c%d fresh clients, "
                  "%d s window, median of %d rounds (worker, event: %d x %d "
                  "threads)"
                  % (scenario, SCENARIOS[scenario], args.think_ms,
                     FRESH_CLIENTS, args.duration, args.repeat,
                     args.processes, WORKERS // args.processes), "",
                  HEADER, separator(HEADER)]
        for mpm in args.mpms:
            for c in configs:
                runs = group.get((scenario, mpm, c["name"]))
                if not runs:
                    continue
                v = median_values(runs)
                starved = (" (ab starved in %d of %d)" % (v["ab_starved"],
                                                          v["rounds"])
                           if v["ab_starved"] else "")
                lines.append(
                    "| %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s "
                    "| %s | %s | %s |" % (
                        mpm, c["name"], fmt(v["fresh_rps"], "%.0f"), starved,
                        fmt(v["fresh_p50"], "%.2f"), fmt(v["fresh_p99"], "%.2f"),
                        fmt(v["fresh_max"], "%.0f"), fmt(v["think_rps"], "%.1f"),
                        fmt(v["think_mean"], "%.2f"), fmt(v["think_p50"], "%.2f"),
                        fmt(v["think_p99"], "%.2f"), fmt(v["think_max"], "%.1f"),
                        fmt(v["reuse"], "%.1f"), fmt(v["shed"], "%.0f"),
                        fmt(v["idle_closes"], "%.0f")))
        if args.h2load_requests > 0:
            lines += ["", "h2load --h1 -c%d -n %d after the window, with the "
                      "%d thinkers running again (returning clients that reuse "
                      "their connection while the server lets them):"
                      % (FRESH_CLIENTS, args.h2load_requests,
                         SCENARIOS[scenario]), "", H2_HEADER,
                      separator(H2_HEADER)]
            for mpm in args.mpms:
                for c in configs:
                    runs = group.get((scenario, mpm, c["name"]))
                    if not runs or "h2load" not in runs[0]:
                        continue
                    v = median_values(runs)
                    note = (" (stopped after %.0f s in %d of %d)"
                            % (args.h2load_budget, v["h2_starved"], v["rounds"])
                            if v["h2_starved"] else "")
                    lines.append("| %s | %s | %s%s | %s | %s | %s |" % (
                        mpm, c["name"], fmt(v["h2_rps"], "%.0f"), note,
                        fmt(v["h2_mean"], "%.2f"), fmt(v["h2_max"], "%.1f"),
                        fmt(v["h2_reuse"], "%.1f")))
        lines.append("")
    lines += targets(group, configs, args) + [""] + rounds_table(group, configs, args)
    lines += [""] + notes
    return "\n".join(lines) + "\n"


def ratio(a, b):
    return a / b if a is not None and b else None


def paired(base_runs, runs, key, how=ratio):
    """Per round: how(this run's value, the same round's baseline value)."""
    out = []
    for b, r in zip(base_runs, runs):
        out.append(how(values(r)[key], values(b)[key]))
    return out


def median_of(xs):
    got = [x for x in xs if x is not None]
    return statistics.median(got) if got else None


def verdict(value, ok):
    return "-" if value is None else ("MET" if ok(value) else "NOT MET")


def targets(group, configs, args):
    """The issue's targets per MPM for every adaptive row. Each round's
    adaptive run is compared with the Off (saturated) or On (unsaturated)
    run of the same round, which ran within the same two minutes; the
    verdict is on the median of those per-round ratios (the rounds are in
    brackets)."""
    out = ["### Targets", "",
           "Per round, adaptive / Off (saturated) or adaptive / On "
           "(unsaturated) of the same round; the verdict is on the median "
           "over the rounds (each round in brackets).", "",
           "| config | MPM | fresh req/s vs Off (>= 90%) | fresh p99 vs Off "
           "(<= 2x) | reuse, unsaturated (>= 95%) | thinker mean latency vs "
           "On (<= 1.10x) | thinker p50 vs On |",
           separator("| a | b | c | d | e | f | g |")]

    def cell(xs, spec, ok, scale=1.0):
        m = median_of(xs)
        shown = fmt(None if m is None else m * scale, spec)
        rounds = ", ".join(fmt(None if x is None else x * scale, spec)
                           for x in xs)
        return "%s %s (%s)" % (shown, verdict(m, ok), rounds)

    for c in (c for c in configs if c["adaptive"]):
        for mpm in args.mpms:
            off = group.get(("saturated", mpm, "off"), [])
            sat = group.get(("saturated", mpm, c["name"]), [])
            on = group.get(("unsaturated", mpm, "on"), [])
            uns = group.get(("unsaturated", mpm, c["name"]), [])
            tput = paired(off, sat, "fresh_rps")
            p99 = paired(off, sat, "fresh_p99")
            reuse = [values(r)["reuse"] for r in uns]
            lat = paired(on, uns, "think_mean")
            lat50 = paired(on, uns, "think_p50")
            out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                c["name"], mpm,
                cell(tput, "%.0f%%", lambda x: x >= 0.9, 100.0) if sat else "-",
                cell(p99, "%.2fx", lambda x: x <= 2.0) if sat else "-",
                cell(reuse, "%.1f%%", lambda x: x >= 95.0) if uns else "-",
                cell(lat, "%.2fx", lambda x: x <= 1.10) if uns else "-",
                "%s (%s)" % (fmt(median_of(lat50), "%.2fx"),
                             ", ".join(fmt(x, "%.2fx") for x in lat50))
                if uns else "-"))
    return out


def rounds_table(group, configs, args):
    """Every round's key numbers, to show the spread behind the medians."""
    out = ["### Round by round",
           "", "fresh req/s / fresh p99 ms / reuse % / thinker mean ms, "
           "rounds separated by ';'", "",
           "| scenario | MPM | config | rounds |", separator("| a | b | c | d |")]
    for scenario in args.scenarios:
        for mpm in args.mpms:
            for c in configs:
                runs = group.get((scenario, mpm, c["name"]), [])
                cells = []
                for r in runs:
                    v = values(r)
                    flag = " (*)" if r["foreign_before"] or r["foreign_after"] else ""
                    cells.append("%s / %s / %s / %s%s" % (
                        fmt(v["fresh_rps"], "%.0f"), fmt(v["fresh_p99"], "%.2f"),
                        fmt(v["reuse"], "%.1f"), fmt(v["think_mean"], "%.2f"),
                        flag))
                if cells:
                    out.append("| %s | %s | %s | %s |" % (
                        scenario, mpm, c["name"], "; ".join(cells)))
    out += ["", "(*): another pytest or apache2 process ran at the start or "
            "end of that run."]
    return out


def snapshot_module(path, workdir, n, notes):
    """A copy of the module in ``workdir``, so that every run loads the same
    binary even if the module is rebuilt meanwhile; its path and checksum
    are appended to ``notes``."""
    copy = workdir / ("mod_keepalive-%d.so" % n)
    shutil.copy2(path, copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()[:16]
    notes.append("%s (sha256 %s...)" % (path, digest))
    return copy


def machine_facts():
    version = subprocess.run(["/usr/sbin/apache2", "-v"], capture_output=True,
                             text=True).stdout.strip().replace("\n", "; ")
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else ""
    except OSError:
        pass
    return "nproc %d (%s); %s" % (os.cpu_count(), cpu, version)


def rerender(path, markdown=None):
    data = json.loads(Path(path).read_text())
    saved = data["args"]

    class Saved:
        pass
    args = Saved()
    results = data["results"]
    seen = lambda key: list(dict.fromkeys(r[key] for r in results))
    args.mpms, args.scenarios = seen("mpm"), seen("scenario")
    args.think_ms = int(saved["think_ms"])
    args.duration = int(saved["duration"])
    args.repeat = int(saved["repeat"])
    args.processes = int(saved.get("processes", 2))
    args.h2load_requests = int(saved["h2load_requests"])
    args.h2load_budget = float(saved["h2load_budget"])
    labels = {}
    for r in results:
        labels.setdefault(r["config"], r["label"])
    configs = [{"name": n, "label": l, "adaptive": n not in ("on", "off")}
               for n, l in labels.items()]
    table = render(results, configs, args, data.get("notes", []))
    print(table)
    if markdown:
        Path(markdown).write_text(table)
    return 0


def add_run_options(p, quick_help):
    """The options of a run of thinkers and fresh clients (also
    bench/pool_sizes.py's)."""
    p.add_argument("--duration", type=int, default=15,
                   help="seconds of the measurement window (ab -t)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of thinkers alone before ab starts")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds per configuration (medians are shown)")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--think-ms", type=int, default=1000)


def add_wait_and_output_options(p, wait_quiet, group_wait):
    """--wait-quiet, --group-wait (defaults given), --json, --from-json,
    --markdown."""
    p.add_argument("--wait-quiet", type=float, default=wait_quiet,
                   help="first wait up to this many seconds, checking every "
                        "30 s, for a quiet machine (load < 0.5, no other "
                        "pytest/apache2); 0: do not wait")
    p.add_argument("--group-wait", type=float, default=group_wait,
                   help="before each round, wait up to this many seconds for "
                        "other pytest/apache2 processes to end")
    p.add_argument("--json", help="also write every raw result here")
    p.add_argument("--from-json", metavar="FILE",
                   help="run nothing: print the tables of a --json file again")
    p.add_argument("--markdown", help="also write the tables here")


def first_wait(args):
    """The bounded wait for a quiet machine before the first run
    (--wait-quiet); prints and returns what it found."""
    if args.wait_quiet > 0:
        _, note = wait_until_quiet(args.wait_quiet, 30.0, 0.5)
    else:
        note = "no wait: load %.2f, %d other pytest/apache2 processes" % (
            loadavg(), len(foreign_activity()))
    print("start: %s" % note, flush=True)
    return note


def main():
    p = argparse.ArgumentParser(
        prog=prog(),
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--mpms", default=",".join(MPMS))
    p.add_argument("--configs", default=",".join(BASE_CONFIGS),
                   help="any of on,off,adaptive")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    add_run_options(p, "one round of 10 s: a smoke run, too noisy to judge")
    p.add_argument("--processes", type=int, default=2, choices=(1, 2, 4),
                   help="worker and event: processes of 32/N threads each")
    p.add_argument("--thresholds", default="50% 75%",
                   help="KeepAliveAdaptiveThresholds of the adaptive rows")
    p.add_argument("--floor", default="2",
                   help="KeepAliveAdaptiveFloor of the adaptive rows")
    p.add_argument("--interval", default="10ms",
                   help="KeepAliveAdaptiveInterval of the adaptive rows")
    p.add_argument("--variant", action="append", default=[],
                   help="an extra adaptive row: 'SHRINK%% CLOSE%%|FLOOR|INTERVAL'"
                        "[|MODULE.so] (repeatable; MODULE.so: another build "
                        "of the module, e.g. to try an algorithm change)")
    p.add_argument("--h2load-requests", type=int, default=20000,
                   help="requests of the h2load phase (0: skip it)")
    p.add_argument("--h2load-budget", type=float, default=8.0,
                   help="seconds h2load may take before it is stopped")
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    add_wait_and_output_options(p, 900, 120)
    args = p.parse_args()
    if args.from_json:
        return rerender(args.from_json, args.markdown)
    if args.quick:
        args.repeat, args.duration = 1, 10
    args.mpms = [m for m in args.mpms.split(",") if m]
    args.configs = [c for c in args.configs.split(",") if c]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for name, have, known in (("MPM", args.mpms, MPMS),
                              ("config", args.configs, BASE_CONFIGS),
                              ("scenario", args.scenarios, SCENARIOS)):
        bad = [x for x in have if x not in known]
        if bad:
            p.error("unknown %s: %s" % (name, ", ".join(bad)))
    for tool in ("wrk", "ab", "h2load"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            p.error("%s is not installed (wrk, apache2-utils, nghttp2-client)"
                    % tool)
    configs = make_configs(args)
    args.module = Path(args.module).resolve()
    if (any(c["module"] and not c.get("module_path") for c in configs)
            and not args.module.is_file()):
        p.error("%s is not built (run make)" % args.module)

    command = command_line()
    quiet_note = first_wait(args)

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / ("ka-bench-%d" % os.getpid())
    workdir.mkdir(parents=True, exist_ok=True)
    module_notes = []

    def snapshot(path, n):
        return snapshot_module(path, workdir, n, module_notes)

    os.chmod(workdir, 0o755)
    if any(c["module"] and not c.get("module_path") for c in configs):
        args.module = snapshot(args.module, 0)
    for n, c in enumerate(configs, 1):
        if c.get("module_path"):
            if not c["module_path"].is_file():
                p.error("%s does not exist" % c["module_path"])
            c["module_path"] = snapshot(c["module_path"], n)
    module_note = "; ".join(module_notes) or "not loaded"
    results = []
    started = time.monotonic()
    group_notes = []
    for scenario in args.scenarios:
        for mpm in args.mpms:
            for round_no in range(1, args.repeat + 1):
                if args.group_wait > 0:
                    quiet, note = wait_until_quiet(args.group_wait, 5.0)
                    if not quiet:
                        group_notes.append("%s/%s round %d: %s"
                                           % (scenario, mpm, round_no, note))
                for c in configs:
                    t = time.monotonic()
                    r = run_one(mpm, c, scenario, args, workdir, round_no)
                    results.append(r)
                    v = values(r)
                    print("%-11s %-7s %-9s #%d  fresh %6.0f req/s p50 %s p99 %s "
                          "max %s | thinkers %5.1f req/s mean %s ms reuse %s%% | "
                          "shed %s | h2load %s req/s | %.0f s%s" % (
                              scenario, mpm, c["name"], round_no,
                              v["fresh_rps"], fmt(v["fresh_p50"], "%.2f"),
                              fmt(v["fresh_p99"], "%.2f"),
                              fmt(v["fresh_max"], "%.0f"), v["think_rps"],
                              fmt(v["think_mean"], "%.2f"),
                              fmt(v["reuse"], "%.1f"), fmt(v["shed"], "%d"),
                              fmt(v["h2_rps"], "%.0f"), time.monotonic() - t,
                              " (other pytest/apache2 running)"
                              if r["foreign_before"] or r["foreign_after"]
                              else ""),
                          flush=True)
    total = time.monotonic() - started
    notes = ["Command: `%s`" % command,
             "Machine: %s" % machine_facts(),
             "Module: %s" % module_note,
             "Before the first run: %s. Whole run: %.0f s." % (quiet_note, total)]
    notes += ["Not quiet before a round: " + n for n in group_notes]
    table = render(results, configs, args, notes)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()},
             "notes": notes, "results": results}, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
