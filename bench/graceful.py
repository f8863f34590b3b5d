"""Graceful restarts under keep-alive load: core httpd against httpd with
mod_keepalive loaded, side by side, under prefork, worker and event.

Every run is one fresh server (tests/harness/httpd.py's HttpdServer,
its MPM sizing, KeepAlive On, KeepAliveTimeout 5, MaxKeepAliveRequests 100)
in one of two configurations that differ only by the LoadModule line (and
the Include of conf.d/keepalive.conf, comments only):

  core     core httpd alone
  module   mod_keepalive loaded

wrk keeps --connections keep-alive connections busy (-t --threads) on a small
static page for the whole run. After --lead seconds, the server is told
--restarts times to restart gracefully, --interval seconds apart, with
"apache2 -k graceful -f CONF -d DIR" (the harness's own -f and -d; what
"apachectl graceful" does without its config test), or with SIGUSR1 to the
parent (--method signal, the same thing). wrk runs --tail more seconds after
the last restart.

Reported per run: wrk's requests, socket errors (connect, read, write,
timeout) and non-2xx responses; from the error log, the restarts httpd
logged, child crashes ("exit signal"), lines at level error or worse, and
the mod_keepalive problems the test harness looks for; with the module, the
connections it closed with reason server-stopping (/keepalive-status). The
failures of a run are its socket errors plus non-2xx responses. The
configurations run interleaved (--repeat rounds, the order alternating), and
the summary compares, per MPM, the module's failures summed over the rounds
with core's: the target is module <= core, and no crash. Before each round
it waits (bounded) for other pytest or apache2 processes to end; runs during
which one existed are marked (*).
"""

import argparse
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
                                 LOG_LEVEL_RE, HttpdServer)
from tests.harness.wrk import parse_wrk, wrk_failures

MPMS = ("prefork", "worker", "event")
CONFIGS = ("core", "module")
ERROR_LEVELS = ("error", "crit", "alert", "emerg")

# The same text in both configurations: it only applies with the module.
STATUS_CONFIG = """\
<IfModule keepalive_module>
    <Location /keepalive-status>
        SetHandler keepalive-status
    </Location>
</IfModule>
"""

# httpd 2.4, prefork: "AH00171: Graceful restart requested, doing restart";
# worker and event: "AH00297/AH00493: SIGUSR1 received.  Doing graceful restart"
RESTART_RE = re.compile(r"Graceful restart requested, doing restart|"
                        r"SIGUSR1 received\.\s+Doing graceful restart")
READY_RE = re.compile(r"resuming normal operations")


def server_for(mpm, config, module):
    return HttpdServer(mpm, module if config == "module" else None,
                       keepalive=("On", "5", "100"), extra_config=STATUS_CONFIG,
                       name="graceful-%s" % config)


def failures(res):
    return wrk_failures(res["wrk"])


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


def graceful(server, method):
    """One graceful restart; returns an error text or None."""
    if method == "signal":
        server.proc.send_signal(signal.SIGUSR1)
        return None
    cmd = [APACHE_BIN, "-k", "graceful", "-f", str(server.conf_path),
           "-d", str(server.dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                       env=server._env())
    if p.returncode != 0:
        return "%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                    (p.stdout + p.stderr).strip())
    return None


def run_one(mpm, config, round_no, args):
    server = server_for(mpm, config, args.module)
    duration = args.lead + args.restarts * args.interval + args.tail
    res = {"mpm": mpm, "config": config, "round": round_no,
           "restart_errors": []}
    server.start()
    res["foreign"] = len(foreign_activity(server.pgid))
    wrk = None
    try:
        url = "http://127.0.0.1:%d/index.html" % server.port
        wrk = subprocess.Popen(
            ["wrk", "-t%d" % args.threads, "-c%d" % args.connections,
             "-d%ds" % round(duration), "--timeout", "%ds" % args.wrk_timeout,
             url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(args.lead)
        for _ in range(args.restarts):
            t = time.monotonic()
            err = graceful(server, args.method)
            if err:
                res["restart_errors"].append(err)
            time.sleep(max(0.0, args.interval - (time.monotonic() - t)))
        try:
            out, _ = wrk.communicate(timeout=duration + args.wrk_timeout + 30)
        except subprocess.TimeoutExpired:
            wrk.kill()
            out, _ = wrk.communicate(timeout=10)
            out += "\n(wrk killed: did not end in time)"
        wrk = None
        res["foreign"] += len(foreign_activity(server.pgid))
        res["wrk"] = parse_wrk(out)
        if not res["wrk"]["ok"]:
            res["wrk_output"] = out[-2000:]
        if config == "module":
            res["server_stopping"] = server_stopping_closes(server)
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
            wrk.wait(timeout=10)
        res["harness_problems"] = server.stop()
        res.update(error_log_facts(server.error_log()))
        if not (res["harness_problems"] or res["crashes"]):
            server.cleanup()
        else:
            res["dir"] = str(server.dir)
    return res


def render(results, args, command):
    rows = ["| MPM | config | round | requests | connect | read | write | "
            "timeout | non-2xx | failures | restarts logged | crashes | "
            "error lines | closed server-stopping |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- | --- | --- |"]
    for r in results:
        w = r.get("wrk", {})
        rows.append("| %s | %s | %d%s | %s | %s | %s | %s | %s | %s | %s | %d/%d "
                    "| %d | %d | %s |" % (
                        r["mpm"], r["config"], r["round"],
                        " (*)" if r["foreign"] else "", w.get("requests", "-"),
                        w.get("connect", "-"), w.get("read", "-"),
                        w.get("write", "-"), w.get("timeout", "-"),
                        w.get("non2xx", "-"), failures(r) if w else "-",
                        r["restarts_logged"], args.restarts, len(r["crashes"]),
                        len(r["error_lines"]),
                        "-" if r.get("server_stopping") is None
                        else r["server_stopping"]))
    rows += ["", "(*): another pytest or apache2 process ran at the start or "
             "end of that run.", "", "Per MPM, over the rounds (failures: sum, "
             "and each round's; the target compares the sums):", "",
             "| MPM | core requests | core failures | module requests | "
             "module failures | module <= core | crashes (core / module) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    verdicts = []
    for mpm in args.mpms:
        tot = {}
        for config in args.configs:
            runs = [r for r in results if r["mpm"] == mpm
                    and r["config"] == config and r.get("wrk")]
            tot[config] = (sum(r["wrk"]["requests"] for r in runs),
                           sum(failures(r) for r in runs),
                           sum(len(r["crashes"]) for r in runs),
                           ", ".join(str(failures(r)) for r in runs))
        if "core" in tot and "module" in tot:
            ok = tot["module"][1] <= tot["core"][1] and tot["module"][2] == 0
            verdicts.append(ok)
            rows.append("| %s | %d | %d (%s) | %d | %d (%s) | %s | %d / %d |" % (
                mpm, tot["core"][0], tot["core"][1], tot["core"][3],
                tot["module"][0], tot["module"][1], tot["module"][3],
                "yes" if ok else "NO", tot["core"][2], tot["module"][2]))
    rows.append("")
    for r in results:
        tag = "%s/%s #%d" % (r["mpm"], r["config"], r["round"])
        for line in r["crashes"] + r["error_lines"] + r["harness_problems"]:
            rows.append("- %s: `%s`" % (tag, line[:300]))
        for e in r["restart_errors"]:
            rows.append("- %s: restart failed: %s" % (tag, e))
        if r.get("wrk_output"):
            rows.append("- %s: wrk output not understood:\n%s" % (tag, r["wrk_output"]))
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
                   help="seconds between two graceful restarts")
    p.add_argument("--lead", type=float, default=2.0,
                   help="seconds of load before the first restart")
    p.add_argument("--tail", type=float, default=3.0,
                   help="seconds of load after the last restart")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wrk-timeout", type=int, default=5,
                   help="wrk --timeout, seconds")
    p.add_argument("--repeat", type=int, default=2,
                   help="rounds per MPM and configuration, interleaved")
    p.add_argument("--method", choices=("apache2", "signal"), default="apache2",
                   help="apache2 -k graceful, or SIGUSR1 to the parent")
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    p.add_argument("--wait-quiet", type=float, default=300,
                   help="before each round, wait up to this many seconds for "
                        "other pytest/apache2 processes to end (0: do not wait)")
    p.add_argument("--markdown", help="also write the tables here")
    args = p.parse_args()
    args.mpms = comma_choices(p, args.mpms, MPMS, "MPM")
    args.configs = comma_choices(p, args.configs, CONFIGS, "config")
    if subprocess.run(["which", "wrk"], capture_output=True).returncode:
        p.error("wrk is not installed (Debian package wrk)")
    args.module = Path(args.module).resolve()
    if "module" in args.configs and not args.module.is_file():
        p.error("%s is not built (run make)" % args.module)

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
                w = r.get("wrk", {})
                print("%-7s %-6s #%d  requests %s, failures %s (connect %s read "
                      "%s write %s timeout %s non-2xx %s), restarts logged %d, "
                      "crashes %d, error lines %d" % (
                          mpm, config, round_no, w.get("requests"),
                          failures(r) if w else "-", w.get("connect"),
                          w.get("read"), w.get("write"), w.get("timeout"),
                          w.get("non2xx"), r["restarts_logged"],
                          len(r["crashes"]), len(r["error_lines"])), flush=True)
    table, verdicts = render(results, args, command)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    bad_runs = [r for r in results if not r.get("wrk", {}).get("ok")
                or r["restart_errors"] or r["harness_problems"]
                or r["restarts_logged"] != args.restarts]
    return 0 if all(verdicts) and not bad_runs else 1


if __name__ == "__main__":
    sys.exit(main())
