"""Scale: many name-based virtual hosts and large worker pools (issue 19).

Three measurements, each side by side against core httpd (mod_keepalive not
loaded) where that makes sense, all on 127.0.0.1 with free ports
(tests/harness/httpd.py's HttpdServer, Debian's apache2):

startup   Start-up time (apache2 launched until it answers GET /small.txt),
          graceful-restart time (SIGUSR1 until a child of the new
          generation answers: the pid logged by a "%P" CustomLog for the
          request is not one of the old children's), the parent's CPU time
          (user + system, /proc/PID/stat, 10 ms ticks) for each, which
          other work on the machine disturbs far less than the wall time,
          and the RSS (VmRSS)
          of the parent and of the children (mean) once started, and of
          the parent after the restart, with --vhosts name-based
          <VirtualHost 127.0.0.1> blocks (ServerName vN.scale.test and a
          ServerAlias; the main server's DocumentRoot), generated into the
          server's temp directory and Included. "core" is httpd without the
          module; "module" loads conf.d/keepalive.load, Includes
          conf.d/keepalive.conf (the default snippet) and adds the
          keepalive-status handler. MPM --mpm (event: the harness's 2 x 8
          threads). --rounds rounds, core and module interleaved (core
          first in odd rounds, module first in even ones); the medians are
          reported. Target: at 10,000 vhosts the module adds at most 10%
          of core's start-up time.

instructions
          The start-up's instructions, which other work on the machine does
          not disturb: `apache2 -X` (one process; both configuration
          passes, post_config, child_init) under valgrind --tool=callgrind,
          from exec until it answers GET /small.txt, then SIGTERM; the
          profile's total. Core and module (as above), at --vhosts.

scrape    With the module, the same vhost counts: traffic to --traffic-vhosts
          of them (all if fewer; 3 keep-alive requests each, Host: vN),
          then /keepalive-status (Prometheus text) and ?format=json fetched
          --scrapes times each: median wall time of one scrape (a fresh
          connection, request sent to last byte read) and the body's size.
          It measures whatever the module given by --module prints.

sampler   What the load-adaptive mode's occupancy sampler costs per request,
          at large pools: event with 16 processes x 64 threads (ServerLimit
          16, ThreadLimit/ThreadsPerChild 64, MaxRequestWorkers 1024, all
          started up front) and prefork with 256 processes (all started up
          front), KeepAliveAdaptive On (interval 10 ms, the default), the
          harness's configuration otherwise (access log on).
          Method: the whole server runs under
            valgrind --tool=callgrind --vgdb=no
                     --callgrind-out-file=DIR/callgrind.out.%p
          (a forked child stays under valgrind and writes a profile of its
          own; callgrind_control cannot reach forked children, valgrind
          makes no vgdb pipe for them). Once every child is up, ab -k
          (--sampler-connections connections, GET /small.txt, HTTP/1.0
          keep-alive) sends --warmup-requests, then N requests; the server
          is stopped gracefully (SIGWINCH: every child exits by itself and
          writes its profile) and the children's profiles are summed (the
          parent's left out). Two such runs, N = the two
          --sampler-requests counts, are differenced: start-up, warm-up and
          shutdown cancel out, as in bench/cost.py. Requests served are the
          access log lines. From callgrind_annotate --inclusive=yes of each
          profile: the inclusive instructions of keepalive::httpd::
          (anonymous namespace)::sample(long, bool), into which walk_scoreboard()
          is inlined (so also the pressure assessment and the memory of a
          full process, a few hundred instructions); and from the profiles'
          calls= lines the calls to it. Reported: instructions per walk,
          walks per request, instructions per request (all) and the walk's
          share of them under callgrind. Under valgrind the server is about
          50 times slower while each child still samples every 10 ms, so
          walks per request are far more than natively. The same
          configuration is then loaded natively with wrk (2 threads, the
          same connections, --native-seconds) for its requests/s, and the
          native share is projected: at most min(1, samplers x 100 /
          (requests/s)) walks per request (under event each process
          samples at most once per 10 ms; under prefork and worker one
          sample per 10 ms serves the whole server), times instructions per
          walk, over the
          instructions of a request without walks plus those walks.
          Target: at most 0.5%.

Usage:

  python3 -m bench.scale                      # all three parts
  python3 -m bench.scale --parts sampler --sampler-mpms event
  python3 -m bench.scale --parts startup,scrape --vhosts 10,1000,10000
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.cli import command_line, comma_choices, prog
from tests.harness.httpd import (APACHE_BIN, DEFAULT_MODULE, HttpdServer,
                                 pgid_members, port_accepts)
from tests.harness.wrk import parse_wrk

PARTS = ("startup", "instructions", "scrape", "sampler")
SAMPLER_MPMS = ("event", "prefork")

STATUS_LOCATION = """\
<Location "/keepalive-status">
    SetHandler keepalive-status
</Location>
"""
PID_LOG = """\
LogFormat "%P" scale_pid
CustomLog "@DIR@/logs/pid.log" scale_pid
"""
VHOST = """\
<VirtualHost 127.0.0.1>
    ServerName v{n}.scale.test
    ServerAlias www.v{n}.scale.test
</VirtualHost>
"""

SAMPLER_SIZING = {
    "event": """\
StartServers 16
ServerLimit 16
ThreadLimit 64
ThreadsPerChild 64
MinSpareThreads 1
MaxSpareThreads 1024
MaxRequestWorkers 1024
""",
    "prefork": """\
StartServers 256
MinSpareServers 256
MaxSpareServers 256
ServerLimit 256
MaxRequestWorkers 256
""",
}
SAMPLER_PROCESSES = {"event": 16, "prefork": 256}
SAMPLE_FUNCTION = "keepalive::httpd::(anonymous namespace)::sample(long, bool)"
SAMPLE_INTERVAL_S = 0.010


def die(message):
    print("error: %s" % message, file=sys.stderr)
    sys.exit(2)


# -- small helpers -----------------------------------------------------------
def http_get(port, path="/small.txt", host="127.0.0.1", timeout=5.0):
    """One request on a fresh connection: (status, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (path, host)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.\d (\d{3})", head)
    return (int(m.group(1)) if m else 0), body


def answers(port):
    try:
        return http_get(port, timeout=1.0)[0] == 200
    except OSError:
        return False


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (its own, not its
    children's), in seconds (10 ms ticks)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def vhost_config(count):
    return "".join(VHOST.format(n=n) for n in range(1, count + 1))


def make_server(module, mpm, vhosts, name, extra=""):
    files = {"conf/vhosts.conf": vhost_config(vhosts).encode()}
    config = PID_LOG + ('Include "@DIR@/conf/vhosts.conf"\n' if vhosts else "")
    if module:
        config += STATUS_LOCATION
    return HttpdServer(mpm, module, keepalive=("On", "5", "100"),
                       extra_config=config + extra, files=files, name=name)


def configure(server):
    """Write the server's directory and configuration; apache2 -t must pass."""
    test = server.configtest()
    if test.returncode != 0:
        die("apache2 -t failed for %s:\n%s%s" % (server.name, test.stdout, test.stderr))


def launch(server, prefix=(), options=("-D", "FOREGROUND")):
    """Start the configured server (configure() done) in its own session;
    the harness's stop() and children() work on it afterwards."""
    stdio = open(server.stdio_path, "wb")
    try:
        server.proc = subprocess.Popen(
            list(prefix) + [APACHE_BIN, "-f", str(server.conf_path), "-d",
                            str(server.dir)] + list(options),
            stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio,
            start_new_session=True, env=server._env())
    finally:
        stdio.close()
    server.pgid = server.proc.pid


def discard(server):
    """Stop the server if it still runs, remove its directory."""
    if server.proc is not None and server.proc.poll() is None:
        server.stop(check=False)
    server.cleanup()


def logged_pids(server):
    try:
        return (server.dir / "logs" / "pid.log").read_text().split()
    except FileNotFoundError:
        return []


# -- startup -------------------------------------------------------------------
def startup_round(label, module, mpm, vhosts, timeout):
    server = make_server(module, mpm, vhosts, "scale-%s" % label)
    try:
        configure(server)
        started = time.monotonic()
        launch(server)
        deadline = started + timeout
        while not answers(server.port):
            if server.proc.poll() is not None or time.monotonic() > deadline:
                die("%s with %d vhosts did not answer within %.0f s:\n%s"
                    % (label, vhosts, timeout, server.diagnostics()))
            time.sleep(0.005)
        startup = time.monotonic() - started
        startup_cpu = cpu_seconds(server.proc.pid)
        time.sleep(1.0)  # the children settle (event starts its threads)
        old = set(server.children())
        parent_rss = rss_kib(server.proc.pid)
        child_rss = statistics.mean(rss_kib(p) for p in old) if old else 0
        # Graceful restart: until a child of the new generation answers.
        cpu_before = cpu_seconds(server.proc.pid)
        restarted = time.monotonic()
        os.kill(server.proc.pid, signal.SIGUSR1)
        deadline = restarted + timeout
        restart = None
        while time.monotonic() < deadline and server.proc.poll() is None:
            try:
                status = http_get(server.port, timeout=1.0)[0]
            except OSError:
                status = 0
            if status == 200:
                pids = logged_pids(server)
                if pids and int(pids[-1]) not in old:
                    restart = time.monotonic() - restarted
                    restart_cpu = cpu_seconds(server.proc.pid) - cpu_before
                    break
            time.sleep(0.005)
        if restart is None:
            die("%s with %d vhosts: no new generation answered within %.0f s:\n%s"
                % (label, vhosts, timeout, server.diagnostics()))
        time.sleep(0.5)
        parent_rss_after = rss_kib(server.proc.pid)
        problems = server.stop()
        if problems:
            die("error log problems (%s, %d vhosts):\n%s" % (label, vhosts, "\n".join(problems)))
        return {"startup": startup, "restart": restart, "startup_cpu": startup_cpu,
                "restart_cpu": restart_cpu, "parent_rss": parent_rss,
                "child_rss": child_rss, "parent_rss_after": parent_rss_after}
    finally:
        discard(server)


def run_startup(args):
    results = {}  # (vhosts, label) -> [round dicts]
    for vhosts in args.vhosts:
        for r in range(args.rounds):
            order = [("core", None), ("module", args.module)]
            if r % 2:
                order.reverse()
            for label, module in order:
                res = startup_round(label, module, args.mpm, vhosts, args.start_timeout)
                results.setdefault((vhosts, label), []).append(res)
                print("  startup %6d vhosts %-6s round %d: start %.3f s (parent CPU %.2f s), restart %.3f s "
                      "(CPU %.2f s), parent %d KiB (after restart %d), child %d KiB"
                      % (vhosts, label, r + 1, res["startup"], res["startup_cpu"], res["restart"], res["restart_cpu"],
                         res["parent_rss"], res["parent_rss_after"], res["child_rss"]),
                      flush=True)
    return results


def render_startup(results, args):
    def med(v, l, key):
        return median(x[key] for x in results[v, l])
    out = ["#### Start-up, graceful restart and memory, %s, median of %d rounds "
           "(core and module interleaved)" % (args.mpm, args.rounds), "",
           "| vhosts | start-up core | start-up module | added | parent CPU to start core | module "
           "| restart core | restart module | added | parent CPU to restart core | module "
           "| parent RSS core | parent RSS module | child RSS core | child RSS module "
           "| parent RSS after restart core | module |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
           "| ---: | ---: | ---: | ---: |"]
    verdicts = []
    for v in args.vhosts:
        sc, sm = med(v, "core", "startup"), med(v, "module", "startup")
        rc, rm = med(v, "core", "restart"), med(v, "module", "restart")
        out.append("| %s | %.0f ms | %.0f ms | %+.0f ms (%+.1f%%) | %.2f s | %.2f s "
                   "| %.0f ms | %.0f ms | %+.0f ms (%+.1f%%) | %.2f s | %.2f s "
                   "| %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |"
                   % ("{:,}".format(v), sc * 1e3, sm * 1e3, (sm - sc) * 1e3, 100 * (sm - sc) / sc,
                      med(v, "core", "startup_cpu"), med(v, "module", "startup_cpu"),
                      rc * 1e3, rm * 1e3, (rm - rc) * 1e3, 100 * (rm - rc) / rc,
                      med(v, "core", "restart_cpu"), med(v, "module", "restart_cpu"),
                      med(v, "core", "parent_rss") / 1024, med(v, "module", "parent_rss") / 1024,
                      med(v, "core", "child_rss") / 1024, med(v, "module", "child_rss") / 1024,
                      med(v, "core", "parent_rss_after") / 1024,
                      med(v, "module", "parent_rss_after") / 1024))
    biggest = max(args.vhosts)
    sc, sm = med(biggest, "core", "startup"), med(biggest, "module", "startup")
    verdicts.append("Target: added start-up time at %s vhosts at most 10%% of core's: %+.1f%%, %s"
                    % ("{:,}".format(biggest), 100 * (sm - sc) / sc,
                       "met" if sm - sc <= 0.1 * sc else "NOT met"))
    out += ["", *verdicts, "", "Round by round (start-up / restart, ms; the parent's CPU for them, s):", ""]
    for v in args.vhosts:
        for label in ("core", "module"):
            out.append("- %s vhosts, %s: %s" % ("{:,}".format(v), label, ", ".join(
                "%.0f / %.0f (%.2f / %.2f)" % (x["startup"] * 1e3, x["restart"] * 1e3, x["startup_cpu"],
                                               x["restart_cpu"]) for x in results[v, label])))
    return "\n".join(out)


# -- instructions ----------------------------------------------------------------
def startup_instructions(label, module, mpm, vhosts, timeout):
    """Instructions callgrind counts for `apache2 -X` (one process) from
    exec until it answers one request and stops (SIGTERM)."""
    server = make_server(module, mpm, vhosts, "scale-cg-%s" % label)
    try:
        configure(server)
        out_file = server.dir / "callgrind.out"
        out_file.touch()
        os.chmod(out_file, 0o666)  # created as root, written as www-data at exit
        launch(server, ["valgrind", "--tool=callgrind", "--vgdb=no", "--callgrind-out-file=%s" % out_file],
               options=["-X"])
        deadline = time.monotonic() + timeout
        while not answers(server.port):
            if server.proc.poll() is not None or time.monotonic() > deadline:
                die("%s under callgrind did not answer:\n%s" % (label, server.diagnostics()))
            time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=timeout)
        total = profile_figures(out_file)[0]
        if not total:
            die("no instruction total in %s" % out_file)
        return total
    finally:
        discard(server)


def run_instructions(args):
    rows = []
    for vhosts in args.vhosts:
        core = startup_instructions("core", None, args.mpm, vhosts, args.start_timeout)
        module = startup_instructions("module", args.module, args.mpm, vhosts, args.start_timeout)
        rows.append((vhosts, core, module))
        print("  instructions %6d vhosts: core %d, module %d (%+.1f%%)"
              % (vhosts, core, module, 100.0 * (module - core) / core), flush=True)
    return rows


def render_instructions(rows, args):
    out = ["#### Instructions to start (callgrind, `apache2 -X`, %s: exec, both configuration passes, "
           "one request, SIGTERM)" % args.mpm, "",
           "| vhosts | core | module | added | target (10,000 vhosts: at most +10%) |",
           "| ---: | ---: | ---: | ---: | --- |"]
    for vhosts, core, module in rows:
        out.append("| %s | %s | %s | %+.1f%% | %s |" % (
            "{:,}".format(vhosts), "{:,}".format(core), "{:,}".format(module), 100.0 * (module - core) / core,
            ("met" if module - core <= 0.1 * core else "**not met**") if vhosts >= 10000 else ""))
    return "\n".join(out)


# -- scrape --------------------------------------------------------------------
def timed_get(port, path):
    started = time.monotonic()
    status, body = http_get(port, path, timeout=30.0)
    return time.monotonic() - started, status, body


def keepalive_requests(port, host, count):
    """`count` keep-alive requests on one connection (Host: host)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        req = ("GET /small.txt HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
        s.sendall(req * count)
        want, data = count, b""
        deadline = time.monotonic() + 10
        while data.count(b"hello\n") < want and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk


def run_scrape(args):
    rows = []
    for vhosts in args.vhosts:
        server = make_server(args.module, args.mpm, vhosts, "scale-scrape")
        try:
            server.start()
            targets = min(args.traffic_vhosts, vhosts)
            for n in range(1, targets + 1):
                keepalive_requests(server.port, "v%d.scale.test" % n, 3)
            row = {"vhosts": vhosts, "targets": targets}
            for fmt, path in (("prometheus", "/keepalive-status"), ("json", "/keepalive-status?format=json")):
                times, size = [], 0
                for _ in range(args.scrapes):
                    seconds, status, body = timed_get(server.port, path)
                    if status != 200:
                        die("%s answered %d" % (path, status))
                    times.append(seconds)
                    size = len(body)
                row[fmt] = (median(times), size)
                if fmt == "prometheus":
                    row["series"] = sum(1 for l in body.splitlines() if l and not l.startswith(b"#"))
                    row["vhost_labels"] = len(set(re.findall(rb'vhost="([^"]*)"', body)))
            rows.append(row)
            print("  scrape %6d vhosts (%d with traffic): prometheus %.1f ms %d bytes (%d series, %d vhost labels), "
                  "json %.1f ms %d bytes" % (vhosts, targets, row["prometheus"][0] * 1e3, row["prometheus"][1],
                                             row["series"], row["vhost_labels"], row["json"][0] * 1e3,
                                             row["json"][1]), flush=True)
            problems = server.stop()
            if problems:
                die("error log problems:\n%s" % "\n".join(problems))
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop(check=False)
            server.cleanup()
    return rows


def render_scrape(rows, args):
    out = ["#### /keepalive-status with many vhosts (%s, median of %d scrapes, fresh connection each)"
           % (args.mpm, args.scrapes), "",
           "| vhosts | with traffic | Prometheus: time | size | samples | vhost labels | JSON: time | size |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append("| %s | %d | %.1f ms | %s bytes | %s | %s | %.1f ms | %s bytes |"
                   % ("{:,}".format(r["vhosts"]), r["targets"], r["prometheus"][0] * 1e3,
                      "{:,}".format(r["prometheus"][1]), "{:,}".format(r["series"]),
                      "{:,}".format(r["vhost_labels"]), r["json"][0] * 1e3, "{:,}".format(r["json"][1])))
    return "\n".join(out)


# -- sampler -------------------------------------------------------------------
def run_ab(port, connections, requests):
    """`requests` keep-alive requests over `connections` connections."""
    out = subprocess.run(["ab", "-q", "-k", "-n", str(requests), "-c", str(connections),
                          "http://127.0.0.1:%d/small.txt" % port],
                         capture_output=True, text=True, timeout=1800)
    m = re.search(r"Complete requests:\s+(\d+)", out.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", out.stdout)
    if out.returncode or not m or int(m.group(1)) != requests or not failed or int(failed.group(1)):
        die("ab failed:\n%s%s" % (out.stdout, out.stderr))


def run_wrk(port, connections, seconds):
    out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds,
                          "http://127.0.0.1:%d/small.txt" % port],
                         capture_output=True, text=True, timeout=seconds + 120)
    res = parse_wrk(out.stdout)
    if not res["ok"]:
        die("wrk printed no summary:\n%s%s" % (out.stdout, out.stderr))
    return res


def profile_figures(path):
    """(all instructions, inclusive instructions of sample(), calls of it),
    read from the profile itself: its totals line, and for every call of
    sample() the calls= line and the line after it, the call's inclusive
    cost (what callgrind_annotate --inclusive=yes adds up, read in a
    fraction of its time: prefork leaves 256 profiles per run)."""
    names, total, inclusive, calls = {}, 0, 0, 0
    pending = in_call = False
    with open(path, errors="replace") as f:
        for line in f:
            if in_call:
                inclusive += int(line.split()[1])
                in_call = False
                continue
            if line.startswith(("fn=", "cfn=")):
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                pending = bool(m) and line.startswith("cfn=") and names.get(m.group(1), "") == SAMPLE_FUNCTION
                continue
            if line.startswith("calls="):
                if pending:
                    calls += int(line.split()[0].split("=")[1])
                    in_call = True
                pending = False
            elif line.startswith(("totals:", "summary:")):
                total = max(total, int(line.split()[1]))
    return total, inclusive, calls


def access_lines(server):
    try:
        with open(server.access_log_path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def wait_children(server, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            die("httpd exited during start-up:\n%s" % server.diagnostics())
        if len(server.children()) >= want and port_accepts(server.port):
            return
        time.sleep(0.5)
    die("%d children not up within %.0f s (%d)" % (want, timeout, len(server.children())))


def sampler_server(mpm, args):
    return HttpdServer(mpm, args.module, keepalive=("On", "5", "100"),
                       extra_config=SAMPLER_SIZING[mpm] + "KeepAliveAdaptive On\n", name="scale-sampler")


def sampler_callgrind(mpm, args, requests):
    """One server under callgrind, sent `requests` requests: the children's
    instructions, sample()'s inclusive instructions and calls, summed over
    the children's profiles (the parent's left out), and the requests
    served (access log lines)."""
    server = sampler_server(mpm, args)
    try:
        configure(server)
        out_dir = server.dir / "callgrind"
        out_dir.mkdir()
        os.chmod(out_dir, 0o1777)  # the children write their profiles as www-data
        launch(server, ["valgrind", "--tool=callgrind", "--vgdb=no",
                        "--callgrind-out-file=%s/callgrind.out.%%p" % out_dir])
        wait_children(server, SAMPLER_PROCESSES[mpm], args.start_timeout)
        children = set(server.children())
        run_ab(server.port, args.sampler_connections, args.warmup_requests)
        run_ab(server.port, args.sampler_connections, requests)
        time.sleep(1)
        served = access_lines(server)
        if set(server.children()) != children:
            die("the children changed during the run (%d before, %d after)"
                % (len(children), len(server.children())))
        # Graceful stop: the children exit by themselves and write their
        # profiles (a SIGTERM'd parent would SIGKILL slow children).
        server.graceful_stop()
        try:
            server.proc.wait(timeout=args.start_timeout)
        except subprocess.TimeoutExpired:
            pass
        server.stop(check=False)
        total = inclusive = calls = dumps = 0
        for pid in children:
            path = out_dir / ("callgrind.out.%d" % pid)
            if not path.exists():
                die("no profile of child %d in %s" % (pid, out_dir))
            t, i, c = profile_figures(path)
            total, inclusive, calls, dumps = total + t, inclusive + i, calls + c, dumps + 1
        return {"served": served, "total": total, "walk": inclusive,
                "walks": calls, "processes": len(children)}
    finally:
        discard(server)


def sampler_native(mpm, args):
    server = sampler_server(mpm, args)
    try:
        server.start()
        wait_children(server, SAMPLER_PROCESSES[mpm], 60)
        run_wrk(server.port, args.sampler_connections, 3)
        res = run_wrk(server.port, args.sampler_connections, args.native_seconds)
        server.stop(check=False)
        return res["rps"]
    finally:
        discard(server)


def run_sampler(args):
    rows = []
    for mpm in args.sampler_mpms:
        short = sampler_callgrind(mpm, args, args.sampler_requests[0])
        long = sampler_callgrind(mpm, args, args.sampler_requests[1])
        for run in (short, long):
            print("  sampler %-7s callgrind run: %d requests logged, %d walks, %d instructions, "
                  "%d in sample()" % (mpm, run["served"], run["walks"], run["total"], run["walk"]),
                  flush=True)
        cg = {k: long[k] - short[k] for k in ("served", "total", "walk", "walks")}
        cg["processes"] = long["processes"]
        if cg["served"] <= 0:
            die("the longer run served no more requests than the shorter one")
        rps = sampler_native(mpm, args)
        per_walk = cg["walk"] / cg["walks"] if cg["walks"] else 0
        per_request = cg["total"] / cg["served"]
        # Event: each process samples at most once per interval; prefork and
        # worker: one sample for the whole server (288fd8b).
        samplers = cg["processes"] if mpm == "event" else 1
        native_walks = min(1.0, samplers / SAMPLE_INTERVAL_S / rps) if rps else 1.0
        # Natively: the request's instructions but the walks, plus the walks
        # a request carries at the native rate.
        rest = (cg["total"] - cg["walk"]) / cg["served"]
        native_walk = native_walks * per_walk
        row = dict(cg, mpm=mpm, rps=rps, per_walk=per_walk, per_request=per_request,
                   walks_per_request=cg["walks"] / cg["served"], share=cg["walk"] / cg["total"],
                   native_walks=native_walks, native_share=native_walk / (rest + native_walk))
        rows.append(row)
        print("  sampler %-7s difference: %d requests, %d walks, %.0f instructions/walk, "
              "%.0f instructions/request, walk share %.3f%%; native %.0f requests/s, "
              "<= %.3f walks/request, share %.3f%%"
              % (mpm, cg["served"], cg["walks"], per_walk, per_request, 100 * row["share"], rps,
                 native_walks, 100 * row["native_share"]), flush=True)
    return rows


def render_sampler(rows, args):
    out = ["#### The occupancy sampler's cost (callgrind, ab -k -c %d, %s minus %s requests)"
           % (args.sampler_connections, "{:,}".format(args.sampler_requests[1]),
              "{:,}".format(args.sampler_requests[0])), "",
           "| pool | requests (callgrind) | walks | instructions per walk | walks per request | instructions "
           "per request | walk share (callgrind) | native requests/s | walks per request (native, at most) "
           "| walk share (native, projected) | target (native) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        pool = "event 16 x 64" if r["mpm"] == "event" else "prefork 256"
        out.append("| %s | %s | %s | %s | %.3f | %s | %.3f%% | %s | %.3f | %.3f%% | at most 0.5%%: %s |"
                   % (pool, "{:,}".format(r["served"]), "{:,}".format(r["walks"]), "{:,.0f}".format(r["per_walk"]),
                      r["walks_per_request"], "{:,.0f}".format(r["per_request"]), 100 * r["share"],
                      "{:,.0f}".format(r["rps"]), r["native_walks"], 100 * r["native_share"],
                      "met" if r["native_share"] <= 0.005 else "**not met**"))
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(prog=prog(), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of: %s" % ", ".join(PARTS))
    p.add_argument("--module", default=str(DEFAULT_MODULE), help="mod_keepalive.so to measure")
    p.add_argument("--vhosts", default="10,1000,10000", help="vhost counts (startup, scrape)")
    p.add_argument("--rounds", type=int, default=3, help="startup rounds (core and module interleaved)")
    p.add_argument("--mpm", default="event", choices=("prefork", "worker", "event"),
                   help="MPM of startup and scrape")
    p.add_argument("--start-timeout", type=float, default=600,
                   help="seconds a server may take to answer (under valgrind too)")
    p.add_argument("--traffic-vhosts", type=int, default=100, help="vhosts given traffic before scraping")
    p.add_argument("--scrapes", type=int, default=7, help="scrapes per format")
    p.add_argument("--sampler-mpms", default=",".join(SAMPLER_MPMS))
    p.add_argument("--sampler-connections", type=int, default=128, help="wrk connections (sampler)")
    p.add_argument("--sampler-requests", default="5000,25000",
                   help="requests of the two runs under callgrind (ab -k; their difference is measured)")
    p.add_argument("--warmup-requests", type=int, default=2000, help="ab -k warm-up before them")
    p.add_argument("--native-seconds", type=int, default=10, help="native wrk run (sampler)")
    p.add_argument("--markdown", help="also append the tables to this file")
    args = p.parse_args()
    parts = comma_choices(p, args.parts, PARTS, "part")
    args.sampler_mpms = comma_choices(p, args.sampler_mpms, SAMPLER_MPMS, "MPM")
    args.vhosts = [int(v) for v in args.vhosts.split(",")]
    args.sampler_requests = [int(v) for v in args.sampler_requests.split(",")]
    if len(args.sampler_requests) != 2 or args.sampler_requests[0] >= args.sampler_requests[1]:
        p.error("--sampler-requests takes two counts, the smaller first")
    args.module = Path(args.module).resolve()
    if not args.module.is_file():
        p.error("%s is not built (run make)" % args.module)
    for tool in (["valgrind", "ab", "wrk"] if "sampler" in parts else
                 ["valgrind"] if "instructions" in parts else []):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            p.error("%s is not installed" % tool)
    print("module: %s" % args.module, flush=True)
    tables = []
    if "sampler" in parts:
        tables.append(render_sampler(run_sampler(args), args))
    if "startup" in parts:
        tables.append(render_startup(run_startup(args), args))
    if "instructions" in parts:
        tables.append(render_instructions(run_instructions(args), args))
    if "scrape" in parts:
        tables.append(render_scrape(run_scrape(args), args))
    text = "```sh\n%s\n```\n\n%s\n" % (command_line(), "\n\n".join(tables))
    print()
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
