"""Adaptive keep-alive across pool sizes (issue 18), side by side in one run.

bench/adaptive.py's scenario (thinkers: wrk + bench/thinker.lua, one request
per think time on a kept connection; fresh clients: ab, a new connection per
request; reuse counted from the access log's %k) on two pool sizes:

  8    8 workers, 16 thinkers, ab -c4
  32   32 workers, 64 thinkers, ab -c8

under prefork (8 or 32 processes) and worker (2 processes x 4 or x 16
threads), all started up front. Configurations, interleaved round by round:

  on      core httpd alone: KeepAlive On, KeepAliveTimeout 5,
          MaxKeepAliveRequests 100 (mod_keepalive not loaded)
  off     core httpd alone: KeepAlive Off
  static  mod_keepalive (--static-module, default --module), On/5/100 plus
          --static-directives (default "KeepAliveAdaptive On;
          KeepAliveAdaptiveQueue Off": occupancy alone). If that module does
          not know KeepAliveAdaptiveQueue (before issue 18), the line is
          dropped, which is the same mode, and a note says so.
  queue   mod_keepalive (--module), On/5/100 plus --queue-directives
          (default "KeepAliveAdaptive On": default thresholds, the accept
          queue counted where the module has it)
  nginx   (prefork only) Debian's nginx in front of core prefork with
          KeepAlive On/5/100; every client talks to nginx (1 worker
          process, client keepalive_timeout 5s, keepalive_requests 100;
          upstream "keepalive N" with N = the pool's workers,
          keepalive_timeout 4s, below httpd's 5 s, proxy_http_version 1.1,
          Connection "")

Every run is one fresh server (and nginx): the thinkers start; after the
warm-up ab -cF -t D measures the fresh clients (req/s, p50/p99 from ab -e);
the thinkers' requests logged during ab's window give the thinker reuse
share (requests with %k > 0). Then the thinkers stop and, on the same
server, 2 thinkers alone (no fresh clients) run for --idle-window seconds
after one think time of warm-up: their reuse share should be 100%.

For nginx, "thinker reuse" is client -> nginx (nginx's log, from
$connection_requests), the same measure as the httpd rows; "upstream reuse"
is nginx -> httpd: all requests of the window on connections httpd had
served before (httpd's %k).

Targets, per round against the core Off run of the same round (the median
of the per-round values decides PASS or MISS; each round in brackets):
fresh req/s >= 95% of Off; fresh p99 <= 2x Off; thinker reuse >= static's
(percentage points above static); 2 thinkers alone: 100% reuse (every
round). Core On under prefork and worker holds every worker with a thinker,
so ab completes nothing (fresh 0 req/s, no p99) and gives up after 5 s of
silence past its window.

A full run (2 pools x (5 + 4) configurations x 3 rounds, 54 servers) takes
about 23 minutes of runs (about 25 s each, 29 s for core On, whose ab waits
out its timeout), plus the bounded waits for a quiet machine (--wait-quiet
once, --group-wait before each of the 12 rounds): 1484 s in all on a busy
2-core host. --quick (one round of 10 s) takes about 6 minutes.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.adaptive import (FILES, STATUS_CONFIG, add_run_options,
                            add_wait_and_output_options, first_wait, fmt,
                            foreign_activity, fresh_window, log_size,
                            log_window, machine_facts, median_of,
                            module_counters, mpm_sizing, paired,
                            record_clients, separator, snapshot_module,
                            start_wrk, stop_server, stop_wrk, terminate,
                            values, wait_until_quiet)
from tests.harness.cli import comma_choices, command_line, prog
from tests.harness.httpd import DEFAULT_MODULE, HttpdServer
from tests.harness.nginx import Nginx

POOLS = {
    "8": {"workers": 8, "thinkers": 16, "fresh": 4},
    "32": {"workers": 32, "thinkers": 64, "fresh": 8},
}
MPMS = ("prefork", "worker")
PROCESSES = 2            # worker: 2 processes x (workers / 2) threads
CONFIGS = ("on", "off", "static", "queue", "nginx")
PROXIED_MPMS = ("prefork",)
IDLE_THINKERS = 2
QUEUE_DIRECTIVE = "KeepAliveAdaptiveQueue"
DEFAULT_DIRECTIVES = {
    "static": "KeepAliveAdaptive On; KeepAliveAdaptiveQueue Off",
    "queue": "KeepAliveAdaptive On",
}

# The targets: fresh req/s >= 95% of Off, fresh p99 <= 2x Off, thinker
# reuse >= static's, 100% reuse of 2 thinkers alone.
MIN_FRESH_RATIO = 0.95
MAX_P99_RATIO = 2.0


# -- configurations ----------------------------------------------------------
def directive_lines(text):
    """'A On; B Off' -> ['A On', 'B Off']."""
    return [d.strip() for d in text.split(";") if d.strip()]


def make_configs(args):
    configs = {
        "on": {"keepalive": "On", "module": None, "directives": []},
        "off": {"keepalive": "Off", "module": None, "directives": []},
        "static": {"keepalive": "On", "module": args.static_module,
                   "module_name": str(args.static_module),
                   "directives": directive_lines(args.static_directives)},
        "queue": {"keepalive": "On", "module": args.module,
                  "module_name": str(args.module),
                  "directives": directive_lines(args.queue_directives)},
        "nginx": {"keepalive": "On", "module": None, "directives": [],
                  "proxy": "nginx (%d worker process; upstream keepalive %s, "
                           "keepalive_timeout 4s) -> core prefork"
                           % (args.nginx_workers,
                              args.nginx_keepalive or "= the pool's workers")},
    }
    out = []
    for name in args.configs:
        c = dict(configs[name], name=name)
        c.setdefault("proxy", False)
        out.append(c)
    return out


def label(c):
    text = "KeepAlive %s/5/100" % c["keepalive"]
    if c["proxy"]:
        return "%s, %s" % (c["proxy"], text)
    if c["module"]:
        text += "; " + "; ".join(c["directives"]) + " (%s)" % c["module_name"]
    return text


def configtest(module, directives):
    server = HttpdServer("prefork", module, extra_config="\n".join(directives))
    try:
        r = server.configtest()
    finally:
        server.cleanup()
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def check_directives(configs, static_default):
    """apache2 -t each module configuration; returns notes. A default static
    configuration whose module lacks KeepAliveAdaptiveQueue runs without
    that line (the occupancy-only mode it asks for)."""
    notes = []
    for c in configs:
        if not c["module"]:
            continue
        ok, out = configtest(c["module"], c["directives"])
        if (not ok and c["name"] == "static" and static_default
                and QUEUE_DIRECTIVE in out):
            c["directives"] = [d for d in c["directives"]
                               if not d.startswith(QUEUE_DIRECTIVE)]
            notes.append("static: the module does not know %s (before issue "
                         "18): run without that line, i.e. occupancy alone"
                         % QUEUE_DIRECTIVE)
            ok, out = configtest(c["module"], c["directives"])
        if not ok:
            raise SystemExit("%s: apache2 -t fails with %s:\n%s"
                             % (c["name"], "; ".join(c["directives"]), out))
        if c["name"] == "queue" and not any(
                d.startswith(QUEUE_DIRECTIVE) for d in c["directives"]):
            known, _ = configtest(c["module"], c["directives"]
                                  + ["%s On" % QUEUE_DIRECTIVE])
            if not known:
                notes.append("queue: the module does not know %s (before "
                             "issue 18): this row is the occupancy-only mode "
                             "too" % QUEUE_DIRECTIVE)
    return notes


# -- one run -----------------------------------------------------------------
def run_one(pool_name, mpm, c, args, workdir, round_no):
    pool = POOLS[pool_name]
    extra = mpm_sizing(mpm, PROCESSES, pool["workers"])
    extra += "".join(d + "\n" for d in c["directives"])
    if c["module"]:
        extra += STATUS_CONFIG
    server = HttpdServer(mpm, c["module"], keepalive=(c["keepalive"], "5", "100"),
                         extra_config=extra, files=FILES,
                         name="pool-%s" % c["name"])
    server.start()
    tag = "%s-%s-%s-%d" % (pool_name, mpm, c["name"], round_no)
    res = {"pool": pool_name, "mpm": mpm, "config": c["name"],
           "round": round_no, "foreign_before": len(foreign_activity(server.pgid))}
    front = wrk = wrk2 = None
    try:
        if c["proxy"]:
            front = Nginx(server.port, args.nginx_keepalive or pool["workers"],
                          name=tag, workers=args.nginx_workers).start()
        client_side = front or server
        base = "http://127.0.0.1:%d" % client_side.port
        wrk_cmd, wrk = start_wrk(base, pool["thinkers"], args)
        time.sleep(args.warmup)
        csv_path = workdir / ("%s-ab.csv" % tag)
        ab_cmd, ab_out, res["window_s"], offsets = fresh_window(
            base, pool["fresh"], args.duration, csv_path, [client_side, server])
        wrk_out = stop_wrk(wrk)
        record_clients(res, ab_out, csv_path, wrk_out, args.duration)
        res["log"] = log_window(client_side, *offsets[0])
        if front:
            res["upstream_log"] = log_window(server, *offsets[1])

        # 2 thinkers alone on the same server: after one think time every
        # connection has sent its first request; the window's are reuses.
        _, wrk2 = start_wrk(base, IDLE_THINKERS, args)
        time.sleep(args.think_ms / 1000.0 + 0.5)
        start = log_size(client_side)
        time.sleep(args.idle_window)
        res["idle_log"] = log_window(client_side, start, log_size(client_side)
                                     ).get("think", {})
        stop_wrk(wrk2)
        if c["module"]:
            res["module"] = module_counters(server)
        res["commands"] = {"wrk": " ".join(wrk_cmd), "ab": " ".join(ab_cmd)}
    finally:
        terminate(wrk)
        terminate(wrk2)
        if front:
            front.stop()
            front.cleanup()
        stop_server(server, res)
    return res


# -- numbers -----------------------------------------------------------------
def share(counts_by_kind):
    requests = sum(c["requests"] for c in counts_by_kind)
    reused = sum(c["reused"] for c in counts_by_kind)
    return 100.0 * reused / requests if requests else None


def run_values(r):
    v = values(r)
    idle = r.get("idle_log", {})
    v["upstream_reuse"] = (share(r["upstream_log"].values())
                           if "upstream_log" in r else None)
    v["idle_reuse"] = share([idle]) if idle else None
    v["idle_requests"] = idle.get("requests", 0)
    return v


def medians(runs):
    vs = [run_values(r) for r in runs]
    return {k: median_of([v[k] for v in vs]) for k in vs[0]
            if k not in ("ab_ok", "h2_ok")}


def cell(xs, spec, ok, scale=1.0, decide=median_of):
    """'value PASS (round, round, ...)': the verdict on decide(xs)."""
    if all(x is None for x in xs):
        return "-"
    m = decide(xs)
    scaled = lambda x: None if x is None else x * scale
    verdict = "-" if m is None else ("PASS" if ok(m) else "MISS")
    return "%s %s (%s)" % (fmt(scaled(m), spec), verdict,
                           ", ".join(fmt(scaled(x), spec) for x in xs))


def all_rounds(xs):
    """The worst round (None if any round has no value)."""
    return None if not xs or any(x is None for x in xs) else min(xs)


HEADER = ("| config | fresh req/s | fresh p50 ms | fresh p99 ms | thinker req/s "
          "| thinker mean ms | thinker p99 ms | thinker reuse % "
          "| nginx->httpd reuse % | shed | 2 thinkers alone: reuse % (requests) |")
TARGET_HEADER = ("| config | fresh req/s >= 95% of Off | fresh p99 <= 2x Off "
                 "| thinker reuse >= static's (points) "
                 "| 2 thinkers alone: 100% reuse (every round) |")


def render(results, meta):
    group = {}
    for r in results:
        group.setdefault((r["pool"], r["mpm"], r["config"]), []).append(r)
    lines = []
    for pool_name in meta["pools"]:
        pool = POOLS[pool_name]
        for mpm in meta["mpms"]:
            names = [n for n in meta["configs"] if (pool_name, mpm, n) in group]
            if not names:
                continue
            sizing = ("%d processes" % pool["workers"] if mpm == "prefork" else
                      "%d x %d threads" % (PROCESSES, pool["workers"] // PROCESSES))
            lines += ["#### %d workers, %s (%s): %d thinkers (think %d ms) + "
                      "ab -c%d fresh clients, %d s window, median of %d rounds"
                      % (pool["workers"], mpm, sizing, pool["thinkers"],
                         meta["think_ms"], pool["fresh"], meta["duration"],
                         meta["repeat"]), "", HEADER, separator(HEADER)]
            for n in names:
                v = medians(group[(pool_name, mpm, n)])
                lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
                             "| %s (%s) |" % (
                                 n, fmt(v["fresh_rps"], "%.0f"),
                                 fmt(v["fresh_p50"], "%.2f"),
                                 fmt(v["fresh_p99"], "%.2f"),
                                 fmt(v["think_rps"], "%.1f"),
                                 fmt(v["think_mean"], "%.2f"),
                                 fmt(v["think_p99"], "%.2f"),
                                 fmt(v["reuse"], "%.1f"),
                                 fmt(v["upstream_reuse"], "%.1f"),
                                 fmt(v["shed"], "%.0f"),
                                 fmt(v["idle_reuse"], "%.1f"),
                                 fmt(v["idle_requests"], "%.0f")))
            tolerance = meta.get("reuse_tolerance", 0.0)
            header = TARGET_HEADER.replace(
                "(points)", "(points%s)" % (", -%g allowed" % tolerance
                                            if tolerance else ""))
            lines += ["", header, separator(header)]
            off = group.get((pool_name, mpm, "off"), [])
            static = group.get((pool_name, mpm, "static"), [])
            for n in names:
                if n == "off":
                    continue
                runs = group[(pool_name, mpm, n)]
                tput = paired(off, runs, "fresh_rps")
                p99 = paired(off, runs, "fresh_p99")
                reuse = paired(static, runs, "reuse",
                               how=lambda a, b: None if a is None or b is None
                               else a - b)
                idle = [run_values(r)["idle_reuse"] for r in runs]
                lines.append("| %s | %s | %s | %s | %s |" % (
                    n,
                    cell(tput, "%.0f%%", lambda x: x >= MIN_FRESH_RATIO, 100.0)
                    if off else "-",
                    cell(p99, "%.2fx", lambda x: x <= MAX_P99_RATIO)
                    if off else "-",
                    cell(reuse, "%+.1f", lambda x: x >= -tolerance)
                    if static and n != "static" else "-",
                    cell(idle, "%.1f%%", lambda x: x >= 100.0,
                         decide=all_rounds)))
            lines.append("")
    lines += rounds_table(group, meta)
    lines += ["", "Configurations: " + "; ".join(
        "%s = %s" % (n, meta["labels"][n]) for n in meta["configs"]) + "."]
    lines += [""] + meta["notes"]
    return "\n".join(lines) + "\n"


def rounds_table(group, meta):
    out = ["#### Round by round", "",
           "fresh req/s / fresh p99 ms / thinker reuse % / 2 thinkers alone "
           "reuse %, rounds separated by ';'", "",
           "| workers | MPM | config | rounds |", separator("| a | b | c | d |")]
    for pool_name in meta["pools"]:
        for mpm in meta["mpms"]:
            for n in meta["configs"]:
                cells = []
                for r in group.get((pool_name, mpm, n), []):
                    v = run_values(r)
                    flag = " (*)" if r["foreign_before"] or r["foreign_after"] else ""
                    cells.append("%s / %s / %s / %s%s" % (
                        fmt(v["fresh_rps"], "%.0f"), fmt(v["fresh_p99"], "%.2f"),
                        fmt(v["reuse"], "%.1f"), fmt(v["idle_reuse"], "%.1f"),
                        flag))
                if cells:
                    out.append("| %s | %s | %s | %s |" % (
                        POOLS[pool_name]["workers"], mpm, n, "; ".join(cells)))
    out += ["", "(*): another pytest or apache2 process ran at the start or "
            "end of that run."]
    return out


# -- main --------------------------------------------------------------------
def main():
    p = argparse.ArgumentParser(
        prog=prog(), description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--pools", default=",".join(POOLS),
                   help="pool sizes (workers), any of %s" % ",".join(POOLS))
    p.add_argument("--mpms", default=",".join(MPMS))
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help="any of %s (nginx runs under prefork only)"
                        % ",".join(CONFIGS))
    p.add_argument("--module", default=str(DEFAULT_MODULE),
                   help="mod_keepalive.so of the queue row (and of static "
                        "unless --static-module)")
    p.add_argument("--static-module",
                   help="another build for the static row, e.g. main's")
    p.add_argument("--static-directives", default=DEFAULT_DIRECTIVES["static"],
                   help="directives of the static row, ';'-separated "
                        "(default: %(default)s)")
    p.add_argument("--queue-directives", default=DEFAULT_DIRECTIVES["queue"],
                   help="directives of the queue row, ';'-separated "
                        "(default: %(default)s)")
    add_run_options(p, "one round of 10 s: a smoke run (about 6 min), too "
                       "noisy to judge")
    p.add_argument("--idle-window", type=float, default=4.0,
                   help="seconds of the '2 thinkers alone' check")
    p.add_argument("--nginx-keepalive", type=int, default=0,
                   help="the upstream's 'keepalive N' (0: the pool's workers)")
    p.add_argument("--nginx-workers", type=int, default=1,
                   help="nginx worker_processes")
    p.add_argument("--reuse-tolerance", type=float, default=0.0,
                   help="percentage points the thinker reuse may fall short "
                        "of static's and still PASS (default 0: the target "
                        "as stated; two identical builds differ by a few "
                        "points from round to round on a busy host)")
    add_wait_and_output_options(p, 30, 5)
    args = p.parse_args()
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        table = render(data["results"], data["meta"])
        print(table)
        if args.markdown:
            Path(args.markdown).write_text(table)
        return 0
    if args.quick:
        args.repeat, args.duration = 1, 10
    args.pools = comma_choices(p, args.pools, POOLS, "pool size")
    args.mpms = comma_choices(p, args.mpms, MPMS, "MPM")
    args.configs = comma_choices(p, args.configs, CONFIGS, "config")
    for tool in ("wrk", "ab") + (("nginx",) if "nginx" in args.configs else ()):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin"):
            p.error("%s is not installed (make bench-pool-sizes installs wrk, "
                    "apache2-utils, nginx)" % tool)
    args.module = Path(args.module).resolve()
    args.static_module = Path(args.static_module or args.module).resolve()
    for c in ("static", "queue"):
        path = args.static_module if c == "static" else args.module
        if c in args.configs and not path.is_file():
            p.error("%s is not built (run make)" % path)

    configs = make_configs(args)
    notes = check_directives(
        configs, args.static_directives == DEFAULT_DIRECTIVES["static"])
    for n in notes:
        print("note: " + n, flush=True)
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / ("ka-pool-%d" % os.getpid())
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    module_notes = []
    for n, c in enumerate(configs):
        if c["module"]:
            c["module"] = snapshot_module(c["module"], workdir, n, module_notes)

    command = command_line()
    quiet_note = first_wait(args)

    results, group_notes = [], []
    started = time.monotonic()
    try:
        for pool_name in args.pools:
            for mpm in args.mpms:
                cs = [c for c in configs
                      if not c["proxy"] or mpm in PROXIED_MPMS]
                for round_no in range(1, args.repeat + 1):
                    if args.group_wait > 0:
                        quiet, note = wait_until_quiet(args.group_wait, 5.0)
                        if not quiet:
                            group_notes.append("%s workers/%s round %d: %s" % (
                                pool_name, mpm, round_no, note))
                    for c in cs:
                        t = time.monotonic()
                        r = run_one(pool_name, mpm, c, args, workdir, round_no)
                        results.append(r)
                        v = run_values(r)
                        print("%2s workers %-7s %-6s #%d  fresh %6.0f req/s p99 %s"
                              " | thinkers %5.1f req/s reuse %s%% (upstream %s%%)"
                              " | 2 alone: reuse %s%% of %d | shed %s | %.0f s%s"
                              % (pool_name, mpm, c["name"], round_no,
                                 v["fresh_rps"], fmt(v["fresh_p99"], "%.2f"),
                                 v["think_rps"], fmt(v["reuse"], "%.1f"),
                                 fmt(v["upstream_reuse"], "%.1f"),
                                 fmt(v["idle_reuse"], "%.1f"), v["idle_requests"],
                                 fmt(v["shed"], "%d"), time.monotonic() - t,
                                 " (other pytest/apache2 running)"
                                 if r["foreign_before"] or r["foreign_after"]
                                 else ""), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - started
    meta = {"pools": args.pools, "mpms": args.mpms, "configs": args.configs,
            "labels": {c["name"]: label(c) for c in configs},
            "think_ms": args.think_ms, "duration": args.duration,
            "repeat": args.repeat, "reuse_tolerance": args.reuse_tolerance,
            "notes": ["Command: `%s`" % command,
                      "Machine: %s" % machine_facts(),
                      "Modules: %s" % ("; ".join(module_notes) or "not loaded"),
                      "Before the first run: %s. Whole run: %.0f s."
                      % (quiet_note, total)]
            + ["Note: " + n for n in notes]
            + ["Not quiet before a round: " + n for n in group_notes]}
    table = render(results, meta)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
