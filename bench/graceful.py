"""Graceful restarts under keep-alive load: core httpd, httpd with
mod_keepalive loaded, and the module's drain-then-graceful, side by side,
under prefork, worker and event.

Every run is one fresh server (tests/harness/httpd.py's HttpdServer,
KeepAlive On, KeepAliveTimeout 5, MaxKeepAliveRequests 100) in one of three
configurations:

  core     core httpd alone, restarted with "apache2 -k graceful"
  module   mod_keepalive loaded, restarted the same way
  drain    mod_keepalive loaded, each restart being "keepalivectl graceful"
           (mod_keepalive/tools/keepalivectl): start a drain at
           /keepalive-drain, so that every response says "Connection:
           close", wait until it is drained (the 5 s KeepAliveTimeout
           advertised before it has passed), then "apache2 -k graceful"

The configuration text is the same in all three: mod_lua with an echo
handler at /echo, and /keepalive-status and /keepalive-drain inside
<IfModule keepalive_module>; core differs by the LoadModule line (and the
Include of conf.d/keepalive.conf, comments only). prefork has the
harness's sizing (up to 16 processes); worker and event up to 4 processes
of --threads-per-child threads (32 by default; the harness has 8). With 8,
the 20 connections below often fill every thread of an event process, and
event's listener then closes the process's idle keep-alive connections
while their clients may be sending on them: read errors by the thousand
without any restart (issue 15's early closes), which would hide what a
restart does.

Two clients load the server for the whole run. wrk keeps --connections
keep-alive connections busy (-t --threads) on a small static page. Node's
global fetch (undici with its default keep-alive agent, bench/fetch_post.js)
POSTs a --post-bytes body to /echo in --post-loops concurrent loops, pausing
--post-gap ms after each response; a POST succeeded when its answer is 2xx
and echoes the body. After --lead seconds the server is restarted
--restarts times. A restart begins --interval seconds after the previous
one began, and at least --settle seconds after it returned: for core and
module, whose "apache2 -k graceful -f CONF -d DIR" (the harness's own -f
and -d; what "apachectl graceful" does without its config test) returns at
once, every --interval seconds; for drain, whose restart takes the drain's
~5 s, after --settle seconds of keep-alive load. With --method signal, core
and module send SIGUSR1 to the parent instead (the same thing). The last
restart is followed by the same wait and then --tail seconds more, and
both clients are stopped (SIGINT); the length of a run is wrk's.

Reported per run: its length, the time its restarts took (mean and
maximum), wrk's requests, socket errors (connect, read, write, timeout)
and non-2xx responses; the POSTs sent and failed, by cause (UND_ERR_SOCKET:
the server closed the connection without answering, "other side closed";
ECONNRESET; ECONNREFUSED; http-NNN: a non-2xx status; timeout;
body-mismatch); from the error log, the restarts httpd logged, child crashes
("exit signal"), lines at level error or worse, and the mod_keepalive
problems the test harness looks for; with the module, the connections it
closed with reason server-stopping (/keepalive-status); with drain, the
drain's state just before each restart (idle, when the previous restart's
new generation started afresh). The failures of a run are its socket
errors plus non-2xx responses plus failed POSTs. The configurations run
interleaved (--repeat rounds, the order reversed every other round), and
the summary compares, per MPM, the failures summed over the rounds. The
targets: module <= core, drain = 0, and no crash. Before each round it
waits (bounded) for other pytest or apache2 processes to end; runs during
which one existed are marked (*).
"""

import argparse
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.adaptive import foreign_activity, wait_until_quiet
from tests.harness.cli import command_line, comma_choices, prog
from tests.harness.httpd import (APACHE_BIN, CRASH_RE, DEFAULT_MODULE,
                                 LOG_LEVEL_RE, REPO_ROOT, HttpdServer)
from tests.harness.wrk import parse_wrk, wrk_failures

MPMS = ("prefork", "worker", "event")
CONFIGS = ("core", "module", "drain")
ERROR_LEVELS = ("error", "crit", "alert", "emerg")
KEEPALIVECTL = REPO_ROOT / "mod_keepalive" / "tools" / "keepalivectl"
POST_CLIENT = Path(__file__).resolve().parent / "fetch_post.js"

# The same text in every configuration: the <IfModule> part only applies
# with the module.
EXTRA_CONFIG = """\
LuaMapHandler "^/echo$" "@DIR@/scripts/echo.lua" handle
<IfModule keepalive_module>
    <Location /keepalive-status>
        SetHandler keepalive-status
    </Location>
    <Location /keepalive-drain>
        SetHandler keepalive-drain
    </Location>
</IfModule>
"""

# /echo: answers a POST with its body.
ECHO_LUA = b"""\
function handle(r)
  if r.method ~= "POST" then
    return 405
  end
  local body = r:requestbody()
  r.content_type = "application/octet-stream"
  r:puts(body)
  return apache2.OK
end
"""

# httpd 2.4, prefork: "AH00171: Graceful restart requested, doing restart";
# worker and event: "AH00297/AH00493: SIGUSR1 received.  Doing graceful restart"
RESTART_RE = re.compile(r"Graceful restart requested, doing restart|"
                        r"SIGUSR1 received\.\s+Doing graceful restart")
READY_RE = re.compile(r"resuming normal operations")


# --threads-per-child N: worker and event processes of N threads (the
# harness's have 8); these lines come after the harness's and replace them.
THREADS_CONFIG = """\
<IfModule mpm_%(mpm)s_module>
    ThreadLimit %(n)d
    ThreadsPerChild %(n)d
    MaxRequestWorkers %(max)d
    MaxSpareThreads %(spare)d
</IfModule>
"""


def server_for(mpm, config, args):
    extra = EXTRA_CONFIG
    if mpm != "prefork":
        n = args.threads_per_child
        extra += THREADS_CONFIG % {"mpm": mpm, "n": n, "max": 4 * n,
                                   "spare": 2 * n}
    return HttpdServer(mpm, None if config == "core" else args.module,
                       keepalive=("On", "5", "100"), extra_config=extra,
                       extra_modules=["lua"],
                       files={"scripts/echo.lua": ECHO_LUA},
                       name="graceful-%s" % config)


def post_failures(res):
    post = res.get("post") or {}
    return post.get("failed", 0) if "sent" in post else 0


def failures(res):
    return wrk_failures(res["wrk"]) + post_failures(res)


def error_log_facts(text):
    errors = []
    for line in text.splitlines():
        m = LOG_LEVEL_RE.match(line)
        if m and m.group(2).lower() in ERROR_LEVELS:
            errors.append(line)
    return {"restarts_logged": len(RESTART_RE.findall(text)),
            "ready_logged": len(READY_RE.findall(text)),
            "crashes": [l for l in text.splitlines() if CRASH_RE.search(l)],
            "error_lines": errors}


def server_stopping_closes(server):
    url = "http://127.0.0.1:%d/keepalive-status" % server.port
    try:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError:
        return None
    m = re.search(r'^keepalive_connections_closed_total\{reason="server-stopping"\} '
                  r'(\d+)$', text, re.M)
    return int(m.group(1)) if m else None


def drain_state(server):
    """The drain's state (idle, draining, drained) as /keepalive-drain says,
    or the error."""
    url = "http://127.0.0.1:%d/keepalive-drain" % server.port
    try:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError as e:
        return "error: %s" % e
    m = re.search(r"^state:\s*(\S+)", text, re.M)
    return m.group(1) if m else "unreadable"


def apache2_k(server):
    return [APACHE_BIN, "-f", str(server.conf_path), "-d", str(server.dir), "-k"]


def graceful(server, config, args):
    """One graceful restart; returns an error text or None."""
    if config == "drain":
        cmd = ["sh", str(args.keepalivectl),
               "--url", "http://127.0.0.1:%d/keepalive-drain" % server.port,
               "--apachectl", " ".join(apache2_k(server)), "graceful"]
    elif args.method == "signal":
        server.proc.send_signal(signal.SIGUSR1)
        return None
    else:
        cmd = apache2_k(server) + ["graceful"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=args.restart_timeout, env=server._env())
    except subprocess.TimeoutExpired:
        return "%s: no end within %d s" % (" ".join(cmd), args.restart_timeout)
    if p.returncode != 0:
        return "%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                    (p.stdout + p.stderr).strip()[-500:])
    return None


def stop_client(proc, timeout):
    """SIGINT (wrk prints its summary, fetch_post.js its counts), bounded
    wait, then SIGKILL; returns the output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        out += "\n(killed: did not end in time)"
    return out


def run_one(mpm, config, round_no, args):
    server = server_for(mpm, config, args)
    # Only a bound: the clients are stopped after the tail.
    bound = args.lead + args.restarts * (args.interval + args.settle
                                         + args.restart_timeout) + args.tail
    res = {"mpm": mpm, "config": config, "round": round_no,
           "restart_errors": [], "restart_seconds": [], "drain_states": []}
    server.start()
    res["foreign"] = len(foreign_activity(server.pgid))
    base = "http://127.0.0.1:%d" % server.port
    clients = []
    try:
        wrk = subprocess.Popen(
            ["wrk", "-t%d" % args.threads, "-c%d" % args.connections,
             "-d%ds" % round(bound), "--timeout", "%ds" % args.wrk_timeout,
             base + "/index.html"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        clients.append(wrk)
        node = None
        if args.post_loops > 0:
            node = subprocess.Popen(
                ["node", str(POST_CLIENT), json.dumps({
                    "url": base + "/echo", "loops": args.post_loops,
                    "duration_ms": round(bound * 1000),
                    "gap_ms": args.post_gap, "body_bytes": args.post_bytes})],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            clients.append(node)
        time.sleep(args.lead)
        for _ in range(args.restarts):
            t = time.monotonic()
            if config == "drain":
                res["drain_states"].append(drain_state(server))
            err = graceful(server, config, args)
            took = time.monotonic() - t
            res["restart_seconds"].append(took)
            if err:
                res["restart_errors"].append(err)
            time.sleep(max(args.interval - took, args.settle))
        time.sleep(args.tail)
        out = stop_client(wrk, args.wrk_timeout + 30)
        res["wrk"] = parse_wrk(out)
        if not res["wrk"]["ok"]:
            res["wrk_output"] = out[-2000:]
        if node is not None:
            out = stop_client(node, 30)
            try:
                res["post"] = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                res["post"] = {"fatal": "no result: %s" % out[-2000:]}
        res["foreign"] += len(foreign_activity(server.pgid))
        if config != "core":
            res["server_stopping"] = server_stopping_closes(server)
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        res["harness_problems"] = server.stop()
        res.update(error_log_facts(server.error_log()))
        if not (res["harness_problems"] or res["crashes"]):
            server.cleanup()
        else:
            res["dir"] = str(server.dir)
    return res


def post_cell(r):
    """POSTs failed of sent, with the causes: "2/1234 (UND_ERR_SOCKET 2)"."""
    post = r.get("post")
    if not post:
        return "-"
    if "sent" not in post or post.get("fatal"):
        return "client failed"
    codes = ", ".join("%s %d" % kv for kv in sorted(post["failures"].items()))
    return "%d/%d%s" % (post["failed"], post["sent"],
                        " (%s)" % codes if codes else "")


def restart_cell(r):
    s = r["restart_seconds"]
    return "%.2f / %.2f" % (sum(s) / len(s), max(s)) if s else "-"


def drain_cell(r):
    states = r["drain_states"]
    if not states:
        return "-"
    counts = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join("%s %d" % kv for kv in sorted(counts.items()))


def run_line(r, args):
    w = r.get("wrk", {})
    return ("%-7s %-6s #%d  %s s, restarts %s s, requests %s, failures %s "
            "(connect %s read %s write %s timeout %s non-2xx %s, POSTs failed "
            "%s), restarts logged %d, crashes %d, error lines %d%s" % (
                r["mpm"], r["config"], r["round"],
                "%.1f" % w["seconds"] if w else "-", restart_cell(r),
                w.get("requests"), failures(r) if w else "-", w.get("connect"),
                w.get("read"), w.get("write"), w.get("timeout"),
                w.get("non2xx"), post_cell(r), r["restarts_logged"],
                len(r["crashes"]), len(r["error_lines"]),
                ", drain state before: " + drain_cell(r)
                if r["drain_states"] else ""))


def render(results, args, command):
    rows = ["| MPM | config | round | run (s) | restart (s, mean / max) | "
            "requests | connect | read | write | timeout | non-2xx | "
            "POSTs failed / sent | failures | restarts logged | crashes | "
            "error lines | closed server-stopping | drain state before |",
            "|" + " --- |" * 18]
    for r in results:
        w = r.get("wrk", {})
        rows.append("| %s | %s | %d%s | %s | %s | %s | %s | %s | %s | %s | %s "
                    "| %s | %s | %d/%d | %d | %d | %s | %s |" % (
                        r["mpm"], r["config"], r["round"],
                        " (*)" if r["foreign"] else "",
                        "%.1f" % w["seconds"] if w else "-", restart_cell(r),
                        w.get("requests", "-"), w.get("connect", "-"),
                        w.get("read", "-"), w.get("write", "-"),
                        w.get("timeout", "-"), w.get("non2xx", "-"),
                        post_cell(r), failures(r) if w else "-",
                        r["restarts_logged"], args.restarts, len(r["crashes"]),
                        len(r["error_lines"]),
                        "-" if r.get("server_stopping") is None
                        else r["server_stopping"], drain_cell(r)))
    rows += ["", "(*): another pytest or apache2 process ran at the start or "
             "end of that run.", "", "Per MPM and configuration, over the "
             "rounds (failures: sum, and each round's):", "",
             "| MPM | config | requests | POSTs sent | socket errors | non-2xx "
             "| POSTs failed | failures | crashes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    tot = {}
    for mpm in args.mpms:
        for config in args.configs:
            runs = [r for r in results if r["mpm"] == mpm
                    and r["config"] == config and r.get("wrk")]
            t = tot[mpm, config] = {
                "requests": sum(r["wrk"]["requests"] for r in runs),
                "posts": sum((r.get("post") or {}).get("sent", 0) for r in runs),
                "socket": sum(wrk_failures(r["wrk"]) - r["wrk"]["non2xx"]
                              for r in runs),
                "non2xx": sum(r["wrk"]["non2xx"] for r in runs),
                "post_failed": sum(post_failures(r) for r in runs),
                "failures": sum(failures(r) for r in runs),
                "crashes": sum(len(r["crashes"]) for r in runs),
                "each": ", ".join(str(failures(r)) for r in runs)}
            rows.append("| %s | %s | %d | %d | %d | %d | %d | %d (%s) | %d |" % (
                mpm, config, t["requests"], t["posts"], t["socket"],
                t["non2xx"], t["post_failed"], t["failures"], t["each"],
                t["crashes"]))
    rows += ["", "| MPM | module <= core, no crash | drain: 0 failures, no "
             "crash |", "| --- | --- | --- |"]
    verdicts = []
    for mpm in args.mpms:
        cells = []
        if "core" in args.configs and "module" in args.configs:
            ok = (tot[mpm, "module"]["failures"] <= tot[mpm, "core"]["failures"]
                  and tot[mpm, "module"]["crashes"] == 0)
            verdicts.append(ok)
            cells.append("yes" if ok else "NO")
        else:
            cells.append("-")
        if "drain" in args.configs:
            ok = (tot[mpm, "drain"]["failures"] == 0
                  and tot[mpm, "drain"]["crashes"] == 0)
            verdicts.append(ok)
            cells.append("yes" if ok else "NO")
        else:
            cells.append("-")
        rows.append("| %s | %s | %s |" % (mpm, cells[0], cells[1]))
    rows.append("")
    for r in results:
        tag = "%s/%s #%d" % (r["mpm"], r["config"], r["round"])
        for line in r["crashes"] + r["error_lines"] + r["harness_problems"]:
            rows.append("- %s: `%s`" % (tag, line[:300]))
        for e in r["restart_errors"]:
            rows.append("- %s: restart failed: %s" % (tag, e))
        if r.get("wrk_output"):
            rows.append("- %s: wrk output not understood:\n%s" % (tag, r["wrk_output"]))
        post = r.get("post") or {}
        if post.get("fatal"):
            rows.append("- %s: POST client: %s" % (tag, post["fatal"][:2000]))
        for s in post.get("samples", [])[:5]:
            rows.append("- %s: POST sent at %.1f s failed at %.1f s: %s %s"
                        % (tag, s["start"] / 1000, s["t"] / 1000, s["code"],
                           s["detail"][:200]))
        if r.get("dir"):
            rows.append("- %s: server directory kept: %s" % (tag, r["dir"]))
    rows += ["", "Command: `%s`" % command]
    return "\n".join(rows) + "\n", verdicts


def main():
    p = argparse.ArgumentParser(
        prog=prog(),
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--mpms", default=",".join(MPMS))
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--interval", type=float, default=1.5,
                   help="seconds from the start of one graceful restart to "
                        "the start of the next")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds of load at least between the end of one "
                        "restart and the start of the next")
    p.add_argument("--lead", type=float, default=2.0,
                   help="seconds of load before the first restart")
    p.add_argument("--tail", type=float, default=3.0,
                   help="seconds of load after the wait that follows the "
                        "last restart")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wrk-timeout", type=int, default=5,
                   help="wrk --timeout, seconds")
    p.add_argument("--threads-per-child", type=int, default=32,
                   help="worker and event: up to 4 processes of this many "
                        "threads (8: the harness's sizing)")
    p.add_argument("--post-loops", type=int, default=4,
                   help="concurrent POST loops of the Node fetch client "
                        "(0: no POSTs)")
    p.add_argument("--post-gap", type=int, default=20,
                   help="ms each POST loop pauses after a response")
    p.add_argument("--post-bytes", type=int, default=64,
                   help="size of each POST body")
    p.add_argument("--repeat", type=int, default=2,
                   help="rounds per MPM and configuration, interleaved")
    p.add_argument("--method", choices=("apache2", "signal"), default="apache2",
                   help="core and module: apache2 -k graceful, or SIGUSR1 to "
                        "the parent")
    p.add_argument("--restart-timeout", type=int, default=60,
                   help="seconds a restart command may take")
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    p.add_argument("--keepalivectl", default=str(KEEPALIVECTL))
    p.add_argument("--wait-quiet", type=float, default=300,
                   help="before each round, wait up to this many seconds for "
                        "other pytest/apache2 processes to end (0: do not wait)")
    p.add_argument("--markdown", help="also write the tables here")
    args = p.parse_args()
    args.mpms = comma_choices(p, args.mpms, MPMS, "MPM")
    args.configs = comma_choices(p, args.configs, CONFIGS, "config")
    for tool, package in (("wrk", "wrk"), ("node", "nodejs"), ("curl", "curl")):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            p.error("%s is not installed (Debian package %s)" % (tool, package))
    args.module = Path(args.module).resolve()
    if set(args.configs) - {"core"} and not args.module.is_file():
        p.error("%s is not built (run make)" % args.module)
    args.keepalivectl = Path(args.keepalivectl).resolve()
    if "drain" in args.configs and not args.keepalivectl.is_file():
        p.error("%s is missing (the drain configuration needs it)"
                % args.keepalivectl)

    command = command_line()
    results = []
    for mpm in args.mpms:
        for round_no in range(1, args.repeat + 1):
            if args.wait_quiet > 0:
                quiet, note = wait_until_quiet(args.wait_quiet, 10.0)
                if not quiet:
                    print("  " + note, flush=True)
            order = args.configs if round_no % 2 else args.configs[::-1]
            for config in order:
                r = run_one(mpm, config, round_no, args)
                results.append(r)
                print(run_line(r, args), flush=True)
    table, verdicts = render(results, args, command)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    bad_runs = [r for r in results if not r.get("wrk", {}).get("ok")
                or r["restart_errors"] or r["harness_problems"]
                or r["restarts_logged"] != args.restarts
                or (args.post_loops > 0 and "sent" not in (r.get("post") or {}))]
    return 0 if all(verdicts) and not bad_runs else 1


if __name__ == "__main__":
    sys.exit(main())
