"""Memory growth of the process serving ONE keep-alive connection that
carries 1,000,000 requests, with mod_keepalive loaded and without.

Per MPM (prefork by default) and configuration, one fresh server
(tests/harness/httpd.py's HttpdServer) with KeepAlive On, a long
KeepAliveTimeout and MaxKeepAliveRequests 0 (no request limit):

  core        core httpd alone (mod_keepalive not loaded): the baseline
  module      mod_keepalive loaded, none of its directives set
  directives  mod_keepalive with its per-request directives in use, at server
              level and in a <Location> the requests hit (timeouts, budget,
              lifetime, KeepAliveDisableIf, KeepAliveAdaptive On), so that
              their code runs on every request too

One TCP connection sends GET /small.txt (a 6-byte static file) --requests
times, pipelined in batches of --batch requests. Every batch's responses are
counted exactly (each ends with the head's empty line and the known 6-byte
body) and checked: all "HTTP/1.1 200 OK", none says "close", none carries a
"max=" (there is no request limit), and with the module every one carries
"Keep-Alive: timeout=T" alone. The connection must never be closed by the
server. After the run, the server's access log must show the last request as
request number --requests on that connection (its %k), and, with the module,
/keepalive-status must have counted every request.

The serving child is the httpd process holding the server end of the
connection (/proc/net/tcp and /proc/PID/fd); its VmRSS and RssAnon
(/proc/PID/status) are read after --warmup requests, at --samples points
along the run, and at the end.
The growth is end minus warm-up; the target is less than --limit-kib
(1 MiB) with the module. The same child must still hold the connection at
the end.
"""

import argparse
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness.cli import command_line, comma_choices, prog
from tests.harness.httpd import DEFAULT_MODULE, HttpdServer
from tests.harness.pipeline import (Pipeline, PipelineError, memory_kib,
                                    serving_child)

MPMS = ("prefork", "worker", "event")
CONFIGS = ("core", "module", "directives")
KEEPALIVE_TIMEOUT = 300           # s: nothing idles that long here
ADVERTISED = 250                  # KeepAliveAdvertisedTimeout of "directives"

STATUS_LOCATION = """\
<Location /keepalive-status>
    SetHandler keepalive-status
</Location>
"""
DIRECTIVES = """\
KeepAliveMaxRequests 0
KeepAliveIdleTimeout {timeout}
KeepAliveAdvertisedTimeout {timeout}
KeepAliveMaxLifetime 1h
KeepAliveHTTP10 On
KeepAliveDisableIf "%{{HTTP_USER_AGENT}} =~ /BadBot/"
KeepAliveAdaptive On
<Location /small.txt>
    KeepAliveHeader Always
    KeepAliveIdleTimeout {timeout}
    KeepAliveAdvertisedTimeout {advertised}
    KeepAliveMaxRequests 0
    KeepAliveMaxLifetime 2h
    KeepAliveDisableIf "-n %{{ENV:no_such_variable}}"
</Location>
"""

class RunError(Exception):
    """A check of a run failed (see also PipelineError, the pipeline's)."""


def server_for(mpm, config, module):
    extra = ""
    if config != "core":
        extra += STATUS_LOCATION
    if config == "directives":
        extra += DIRECTIVES.format(timeout=KEEPALIVE_TIMEOUT,
                                   advertised=ADVERTISED)
    return HttpdServer(mpm, None if config == "core" else module,
                       keepalive=("On", str(KEEPALIVE_TIMEOUT), "0"),
                       extra_config=extra, name="mem-%s" % config)


def expected_keepalive_line(config):
    """The Keep-Alive line every response must carry (None: no such line)."""
    if config == "core":
        return None        # core sends it only to requests with the token
    timeout = ADVERTISED if config == "directives" else KEEPALIVE_TIMEOUT
    return b"Keep-Alive: timeout=%d\r\n" % timeout


def last_log_line(server, want_ka, wait=5.0):
    """The access log's last line, once its %k is ``want_ka`` (bounded)."""
    deadline = time.monotonic() + wait
    line = ""
    while True:
        with open(server.access_log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("latin-1").splitlines()
        line = lines[-1] if lines else ""
        if (" ka=%d " % want_ka) in line or time.monotonic() > deadline:
            return line
        time.sleep(0.1)


def module_requests_total(server):
    url = "http://127.0.0.1:%d/keepalive-status" % server.port
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    m = re.search(r"^keepalive_requests_total (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def sample_points(args):
    step = max(args.batch, (args.requests - args.warmup) // args.samples)
    return list(range(args.warmup + step, args.requests, step)) + [args.requests]


def run_one(mpm, config, args):
    server = server_for(mpm, config, args.module)
    res = {"mpm": mpm, "config": config, "ok": False, "samples": []}
    started = time.monotonic()
    pipe = None
    server.start()
    try:
        pipe = Pipeline(server.port, expected_keepalive_line(config),
                        started + args.time_limit)
        pipe.batch(min(args.batch, args.warmup))
        pid = serving_child(server, pipe.client_port())
        res["pid"] = pid
        while pipe.done < args.warmup:
            pipe.batch(min(args.batch, args.warmup - pipe.done))
        res["warm"] = memory_kib(pid)
        res["samples"].append((pipe.done, res["warm"]["VmRSS"]))
        t_warm = time.monotonic()
        for point in sample_points(args):
            while pipe.done < point:
                pipe.batch(min(args.batch, point - pipe.done))
            res["samples"].append((pipe.done, memory_kib(pid)["VmRSS"]))
            print("  %s/%s: %9d requests, VmRSS %d KiB, %.0f s"
                  % (mpm, config, pipe.done, res["samples"][-1][1],
                     time.monotonic() - started), flush=True)
        res["end"] = memory_kib(pid)
        res["rate"] = (pipe.done - args.warmup) / (time.monotonic() - t_warm)
        res["requests"] = pipe.done
        holder = serving_child(server, pipe.client_port())
        if holder != pid:
            raise RunError("the connection moved from pid %d to %d" % (pid, holder))
        pipe.close()
        pipe = None
        line = last_log_line(server, args.requests - 1)
        res["log_last"] = line
        if (" ka=%d " % (args.requests - 1)) not in line:
            raise RunError("access log: the last request is not number %d on "
                           "its connection (%%k = %d): %r"
                           % (args.requests, args.requests - 1, line))
        if config != "core":
            res["module_requests"] = module_requests_total(server)
            if (res["module_requests"] or 0) < args.requests:
                raise RunError("keepalive_requests_total is %s, below %d"
                               % (res["module_requests"], args.requests))
        res["ok"] = True
    except (RunError, PipelineError, OSError) as e:
        res["error"] = str(e)
    finally:
        if pipe is not None:
            pipe.close()
        res["log_problems"] = server.stop()
        res["seconds"] = time.monotonic() - started
        if not res["log_problems"]:
            server.cleanup()
        else:
            res["dir"] = str(server.dir)
    if res["log_problems"]:
        res["ok"] = False
    return res


def growth(res, key):
    if "end" not in res:
        return None
    return res["end"][key] - res["warm"][key]


def render(results, args, command):
    kib = lambda v: "-" if v is None else "%+d" % v
    lines = ["| MPM | config | requests | responses checked | VmRSS after %d (KiB) "
             "| VmRSS at end (KiB) | VmRSS growth (KiB) | RssAnon growth (KiB) "
             "| max VmRSS along the run (KiB) | req/s | growth < %d KiB |"
             % (args.warmup, args.limit_kib),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        g = growth(r, "VmRSS")
        verdict = ("-" if g is None else ("yes" if g < args.limit_kib else "NO"))
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["mpm"], r["config"], r.get("requests", "-"),
            "all ok" if r["ok"] else "FAILED",
            r["warm"]["VmRSS"] if "warm" in r else "-",
            r["end"]["VmRSS"] if "end" in r else "-",
            kib(g), kib(growth(r, "RssAnon")),
            max(s[1] for s in r["samples"]) if r["samples"] else "-",
            "%.0f" % r["rate"] if "rate" in r else "-", verdict))
    lines.append("")
    for r in results:
        if r["samples"]:
            lines.append("- %s/%s, child %s, VmRSS (KiB) by request count: %s"
                         % (r["mpm"], r["config"], r.get("pid"), ", ".join(
                             "%d: %d" % s for s in r["samples"])))
        if r.get("module_requests") is not None:
            lines.append("  keepalive_requests_total after the run: %d"
                         % r["module_requests"])
        if r.get("log_last"):
            lines.append("  last access log line: `%s`" % r["log_last"])
        if r.get("error"):
            lines.append("  FAILED: %s" % r["error"])
        for p in r.get("log_problems", []):
            lines.append("  error log: %s" % p)
    lines += ["", "Command: `%s`" % command]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(
        prog=prog(),
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--mpms", default="prefork",
                   help="comma-separated, any of %s" % ",".join(MPMS))
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help="comma-separated, any of %s" % ",".join(CONFIGS))
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--warmup", type=int, default=10_000,
                   help="requests before the first memory reading")
    p.add_argument("--batch", type=int, default=1000,
                   help="requests pipelined per send")
    p.add_argument("--samples", type=int, default=10,
                   help="memory readings between warm-up and end")
    p.add_argument("--limit-kib", type=int, default=1024,
                   help="target: VmRSS growth below this")
    p.add_argument("--time-limit", type=float, default=900,
                   help="seconds one run may take before it fails")
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    p.add_argument("--markdown", help="also write the table here")
    args = p.parse_args()
    args.mpms = comma_choices(p, args.mpms, MPMS, "MPM")
    args.configs = comma_choices(p, args.configs, CONFIGS, "config")
    if not 0 < args.warmup < args.requests or args.batch < 1 or args.samples < 1:
        p.error("want 0 < --warmup < --requests, --batch >= 1, --samples >= 1")
    args.module = Path(args.module).resolve()
    if any(c != "core" for c in args.configs) and not args.module.is_file():
        p.error("%s is not built (run make)" % args.module)

    command = command_line()
    results = []
    for mpm in args.mpms:
        for config in args.configs:
            print("%s/%s: %d requests on one connection" % (mpm, config,
                                                            args.requests),
                  flush=True)
            r = run_one(mpm, config, args)
            results.append(r)
            print("%s/%s: %s, VmRSS growth %s KiB, %.0f s%s" % (
                mpm, config, "ok" if r["ok"] else "FAILED",
                growth(r, "VmRSS"), r["seconds"],
                "" if r["ok"] else ": %s %s" % (r.get("error", ""),
                                                r.get("log_problems", ""))),
                flush=True)
    table = render(results, args, command)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    failed = [r for r in results if not r["ok"]]
    over = [r for r in results if r["config"] != "core"
            and (growth(r, "VmRSS") or 0) >= args.limit_kib]
    return 1 if failed or over else 0


if __name__ == "__main__":
    sys.exit(main())
