"""What mod_keepalive costs per request (run it as bench/cost).

Two measurements, each side by side in one run, core httpd alone against
httpd with mod_keepalive loaded, same configuration, same traffic:

  instructions  prefork httpd -X under valgrind's callgrind, serving a 3 KB
                static file to keep-alive clients (HTTP/1.1, connections of
                --per-connection requests, one after the other). Each
                configuration is run twice, with --small and --large requests;
                the difference of the two totals divided by the difference of
                the request counts is the cost of one request, with start-up
                and shutdown cancelled out.
  throughput    wrk against a normal prefork server, keep-alive, the two
                servers alternating round by round (--rounds); the ratio is
                module/core of the median requests/s.

Each measurement runs in one or both of two configurations (--config):

  harness   tests/harness/httpd.py's generated configuration: few modules,
            one access log with the harness's own format
  debian    Debian's default: the modules a fresh apache2 install enables,
            their mods-available/*.conf, apache2.conf's five LogFormats and
            security.conf, and one access log in the "combined" format, as
            the default site has (the harness's mod_headers stays loaded)

--before MODULE adds a server with an earlier build of the module to the
same run: before and after a change, side by side with core. --note-read
adds the module again with a log format that names %{keepalive}n. What the
request note costs is reported per server as the inclusive cost of
note_outcome(), the function that makes it (0 where nothing reads it).

The cost of the policy decision alone is measured by
build/decide_benchmark (Google Benchmark; `make bench-decide`).

Servers are tests/harness/httpd.py's HttpdServer (the generated
configuration, files and logs), imported; under callgrind the same
configuration is started as `apache2 -X`.
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

from tests.harness.cli import prog
from tests.harness.httpd import APACHE_BIN, DEFAULT_MODULE, HttpdServer
from tests.harness.wrk import parse_wrk, wrk_failures

PAGE = "page3k.html"
PAGE_BODY = (b"<html><body><pre>\n" + b"mod_keepalive cost benchmark, 3 KB\n" * 88 +
             b"</pre></body></html>\n")[:3072]
# Two kinds of keep-alive clients. "plain": HTTP/1.1 without a Connection
# header (curl, wrk, most libraries); core sends them no Keep-Alive header,
# the module adds one. "token": HTTP/1.1 with "Connection: keep-alive"
# (browsers); core sends them the header itself, so the module adds nothing
# to the response and its cost is its own logic alone.
REQUESTS = {
    "plain": ("GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench/cost\r\n"
              "Accept: */*\r\n\r\n" % PAGE).encode(),
    "token": ("GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench/cost\r\n"
              "Accept: */*\r\nConnection: keep-alive\r\n\r\n" % PAGE).encode(),
}
IR_RE = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def die(message):
    print("bench/cost: " + message, file=sys.stderr)
    sys.exit(2)


def need(tool, package):
    if subprocess.run(["sh", "-c", "command -v %s" % tool], capture_output=True).returncode:
        die("%s not found: apt-get install %s" % (tool, package))


# What a fresh Debian apache2 install enables beyond what the harness loads
# (authz_core, mime, dir, log_config; mod_logio is built in).
DEBIAN_MODULES = ("access_compat", "alias", "auth_basic", "authn_core", "authn_file", "authz_host", "authz_user",
                  "autoindex", "deflate", "env", "filter", "negotiation", "reqtimeout", "setenvif", "status")
DEBIAN_MODS_AVAILABLE = Path("/etc/apache2/mods-available")
# apache2.conf's log formats and security.conf, as Debian ships them; the
# default site logs with "combined".
DEBIAN_MAIN = r"""
HostnameLookups Off
AccessFileName .htaccess
<FilesMatch "^\.ht">
    Require all denied
</FilesMatch>
LogFormat "%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" vhost_combined
LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" combined
LogFormat "%h %l %u %t \"%r\" %>s %O" common
LogFormat "%{Referer}i -> %U" referer
LogFormat "%{User-agent}i" agent
CustomLog "@DIR@/logs/access.log" combined
ServerTokens OS
ServerSignature On
TraceEnable Off
"""


def debian_config():
    parts = []
    for name in DEBIAN_MODULES + ("dir", "mime"):
        conf = DEBIAN_MODS_AVAILABLE / (name + ".conf")
        if conf.exists():
            parts.append("# --- %s ---\n%s" % (conf, conf.read_text()))
    return "\n".join(parts) + DEBIAN_MAIN


def make_server(module, mpm="prefork", extra="", config="harness"):
    # MaxKeepAliveRequests as the default, the connection length the clients use.
    debian = config == "debian"
    return HttpdServer(mpm, module_path=module, keepalive=("On", "5", "100"),
                       extra_config=(debian_config() if debian else "") + extra,
                       extra_modules=DEBIAN_MODULES if debian else (), access_log=not debian,
                       files={"htdocs/" + PAGE: PAGE_BODY}, name="cost")


def read_response(sock, buffer):
    """Reads one response with Content-Length; returns (status line, headers, rest)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if not match:
        raise ValueError("response without Content-Length: %r" % head[:200])
    length = int(match.group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-body")
        rest += chunk
    return head, rest[length:]


def drive(port, request, requests, per_connection, timeout):
    """Sends `requests` requests, `per_connection` on each connection, one at
    a time; checks that every response is a 200 and that connections are kept
    until their last request."""
    done = 0
    while done < requests:
        batch = min(per_connection, requests - done)
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            buffer = b""
            for i in range(batch):
                sock.sendall(request)
                head, buffer = read_response(sock, buffer)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ValueError("unexpected response: %r" % head[:200])
                if i < batch - 1 and re.search(rb"\r\nconnection:\s*close", head, re.I):
                    raise ValueError("connection closed after %d requests" % (i + 1))
        done += batch


def callgrind_instructions(module, request, requests, per_connection, workdir, extra="", config="harness"):
    """Total instructions callgrind counted for one `apache2 -X` run serving
    `requests` requests."""
    server = make_server(module, extra=extra, config=config)
    server.configtest()  # writes the configuration and the document root
    out_dir = Path(tempfile.mkdtemp(prefix="cg-", dir=workdir))
    os.chmod(out_dir, 0o1777)  # the child writes its profile as www-data
    out_file = out_dir / "callgrind.out"
    # valgrind creates the profile as root at start-up and writes it as www-data at exit.
    out_file.touch()
    os.chmod(out_file, 0o666)
    stdio = open(out_dir / "stdio.log", "wb")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % out_file,
         APACHE_BIN, "-X", "-f", str(server.conf_path), "-d", str(server.dir)],
        stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio, start_new_session=True, env=server._env())
    stdio.close()
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                die("apache2 -X under callgrind exited early:\n%s" % (out_dir / "stdio.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    die("apache2 -X under callgrind did not listen within 120 s")
                time.sleep(0.2)
        # The probe above was one connection without a request, in both runs alike.
        drive(server.port, request, requests, per_connection, timeout=60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        server.cleanup()
    data = out_file.read_bytes() if out_file.exists() else b""
    match = IR_RE.search(data)
    if not match:
        die("no instruction total in %s; valgrind said:\n%s" % (out_file, (out_dir / "stdio.log").read_text()[-3000:]))
    return int(match.group(1)), out_file


ANNOTATE_RE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[(.*)\])?$")


def self_costs(profile, inclusive=False):
    """Instructions per function (self cost, or with what it calls), from
    callgrind_annotate."""
    result = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100",
                             "--inclusive=%s" % ("yes" if inclusive else "no"), str(profile)],
                            capture_output=True, text=True)
    costs = {}
    for line in result.stdout.splitlines():
        match = ANNOTATE_RE.match(line)
        if match and ":" in match.group(2):
            name = match.group(2).split(":", 1)[1]
            obj = os.path.basename(match.group(3) or "?")
            costs[(name, obj)] = costs.get((name, obj), 0) + int(match.group(1).replace(",", ""))
    return costs


# Where the request note (%{keepalive}n) is made since it is made only when
# a format reads it: note_outcome(), with what it calls (formatting,
# apr_palloc, apr_table_addn). Earlier builds made it inside record(), which
# link-time optimization inlines: no function of theirs shows it alone.
RECORDING_FUNCTIONS = ("note_outcome",)

# --note-read: the module again, with a log format that names the note
# (defined, not used by any log, so nothing is written): what the note costs
# where something reads it.
NOTE_READ_CONFIG = 'LogFormat "%{keepalive}n" keepalive_note'



def per_request_costs(profiles, label, args, inclusive=False):
    """Cost per function per request, differenced like the totals (large run
    minus small run)."""
    small = self_costs(profiles[label, args.small], inclusive)
    large = self_costs(profiles[label, args.large], inclusive)
    return {k: (large.get(k, 0) - small.get(k, 0)) / (args.large - args.small) for k in set(small) | set(large)}


def recording_costs(costs):
    """Inclusive cost per request of each of RECORDING_FUNCTIONS (0 when it
    never ran)."""
    out = {}
    for function in RECORDING_FUNCTIONS:
        pattern = re.compile(r"(^|::)%s\(" % function)
        out[function] = sum(v for (name, obj), v in costs.items()
                            if pattern.search(name) and obj == "mod_keepalive.so")
    return out


def print_function_differences(profiles, args, limit=25):
    """Where the added instructions go: per-function self cost per request,
    module minus core."""
    core, module = per_request_costs(profiles, "core", args), per_request_costs(profiles, "module", args)
    diffs = sorted(((module.get(k, 0) - core.get(k, 0), k) for k in set(core) | set(module)), reverse=True)
    print("\nwhere the added instructions go (self cost per request, module minus core):")
    for added, (name, obj) in diffs[:limit]:
        if abs(added) >= 1:
            print("  %+8.1f  %s [%s]" % (added, name[:110], obj))


def measure_instructions(args, servers, traffic, config):
    """Instructions per request for each (label, module, configuration) of
    `servers`, and what the functions that make the request note cost."""
    rows, notes = {}, {}
    profiles = {}
    with tempfile.TemporaryDirectory(prefix="ka-cost-") as workdir:
        os.chmod(workdir, 0o755)
        for label, path, extra in servers:
            totals = []
            for count in (args.small, args.large):
                total, profile = callgrind_instructions(path, REQUESTS[traffic], count, args.per_connection, workdir,
                                                        extra, config)
                totals.append(total)
                if args.keep:
                    kept = Path(args.keep) / ("%s-%s-%s-%d.callgrind" % (config, traffic, label, count))
                    kept.write_bytes(profile.read_bytes())
                    profile = kept
                profiles[label, count] = profile
                print("  %-7s %-6s %-6s %7d requests: %d instructions" % (config, traffic, label, count, total),
                      flush=True)
            rows[label] = (totals[1] - totals[0]) / (args.large - args.small)
            if path:
                notes[label] = recording_costs(per_request_costs(profiles, label, args, inclusive=True))
        if args.functions:
            print_function_differences(profiles, args)
    return rows, notes


def wrk_requests_per_second(port, args):
    result = subprocess.run(
        ["wrk", "-t1", "-c%d" % args.connections, "-d%ds" % args.seconds, "--latency",
         "http://127.0.0.1:%d/%s" % (port, PAGE)],
        capture_output=True, text=True, timeout=args.seconds + 60)
    summary = parse_wrk(result.stdout)
    if result.returncode or not summary["ok"] or not summary["rps"]:
        die("wrk failed:\n%s%s" % (result.stdout, result.stderr))
    if wrk_failures(summary):
        die("wrk saw errors:\n%s" % result.stdout)
    return summary["rps"]


def measure_throughput(args, module):
    servers = {"core": make_server(None), "module": make_server(module, extra=args.module_config)}
    results = {label: [] for label in servers}
    try:
        for server in servers.values():
            server.start()
        for label, server in servers.items():  # warm-up, not counted
            subprocess.run(["wrk", "-t1", "-c4", "-d1s", "http://127.0.0.1:%d/%s" % (server.port, PAGE)],
                           capture_output=True, timeout=60)
        for round_number in range(args.rounds):
            order = list(servers) if round_number % 2 == 0 else list(reversed(list(servers)))
            for label in order:
                rps = wrk_requests_per_second(servers[label].port, args)
                results[label].append(rps)
                print("  round %d %-6s %10.0f requests/s" % (round_number + 1, label, rps), flush=True)
        for server in servers.values():
            problems = server.new_log_problems()
            if problems:
                die("server logged problems:\n%s" % problems)
    finally:
        for server in servers.values():
            server.stop(check=False)
            server.cleanup()
    return results


def main():
    p = argparse.ArgumentParser(prog=prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    p.add_argument("--small", type=int, default=2000, help="requests in the first callgrind run")
    p.add_argument("--large", type=int, default=12000, help="requests in the second callgrind run")
    p.add_argument("--per-connection", type=int, default=100,
                   help="requests per keep-alive connection (MaxKeepAliveRequests is 100)")
    p.add_argument("--rounds", type=int, default=6, help="wrk rounds per server")
    p.add_argument("--seconds", type=int, default=5, help="length of one wrk round")
    p.add_argument("--connections", type=int, default=8, help="wrk connections")
    p.add_argument("--traffic", default="token,plain",
                   help="client kinds for callgrind, comma-separated: token (sends Connection: keep-alive), "
                        "plain (no Connection header)")
    p.add_argument("--skip-callgrind", action="store_true")
    p.add_argument("--skip-wrk", action="store_true")
    p.add_argument("--functions", action="store_true",
                   help="also list the functions whose cost the module adds to")
    p.add_argument("--keep", metavar="DIR", help="keep the callgrind profiles in DIR")
    p.add_argument("--config", default="harness,debian",
                   help="configurations for callgrind, comma-separated: harness, debian (see above)")
    p.add_argument("--before", metavar="MODULE",
                   help="an earlier build of the module, measured in the same run as a third server")
    p.add_argument("--note-read", action="store_true",
                   help="also measure the module with a log format that reads %%{keepalive}n")
    p.add_argument("--module-config", default="", metavar="LINES",
                   help="configuration only the module's server gets, e.g. 'KeepAliveMaxLifetime 1h': "
                        "what a request costs when one of the module's directives applies to it")
    args = p.parse_args()
    if args.large <= args.small:
        die("--large must be above --small")
    module = Path(args.module).resolve()
    if not module.exists():
        die("%s not found: run make first" % module)

    servers = [("core", None, "")]
    if args.before:
        before = Path(args.before).resolve()
        if not before.exists():
            die("%s not found" % before)
        servers.append(("before", before, args.module_config))
        print("bench/cost: before %s" % before)
    servers.append(("module", module, args.module_config))
    if args.note_read:
        servers.append(("note-read", module, (args.module_config + "\n" + NOTE_READ_CONFIG).strip()))
    print("bench/cost: module %s" % module)
    if args.module_config:
        print("bench/cost: the module's server also has: %s" % args.module_config.replace("\n", "; "))
    print("apache2: %s" % subprocess.run([APACHE_BIN, "-v"], capture_output=True, text=True).stdout.split("\n")[0])
    instructions = {}
    throughput = None
    if not args.skip_callgrind:
        need("valgrind", "valgrind")
        print("\ncallgrind, prefork httpd -X, GET /%s (3072 bytes), %d requests per connection:"
              % (PAGE, args.per_connection), flush=True)
        for config in args.config.split(","):
            if config not in ("harness", "debian"):
                die("unknown --config %r" % config)
            if config == "debian" and not DEBIAN_MODS_AVAILABLE.exists():
                die("%s not found: the debian configuration needs Debian's apache2 package" % DEBIAN_MODS_AVAILABLE)
            for traffic in args.traffic.split(","):
                if traffic not in REQUESTS:
                    die("unknown --traffic %r" % traffic)
                instructions[config, traffic] = measure_instructions(args, servers, traffic, config)
    if not args.skip_wrk:
        need("wrk", "wrk")
        print("\nwrk -t1 -c%d -d%ds, prefork, %d rounds per server, alternating:"
              % (args.connections, args.seconds, args.rounds), flush=True)
        throughput = measure_throughput(args, module)

    labels = [label for label, _, _ in servers]
    if instructions:
        print("\ninstructions per request (added: against core):\n")
        print("| configuration | clients | %s | note_outcome() inclusive (%s) |"
              % (" | ".join(labels[:1] + ["%s (added)" % l for l in labels[1:]]), ", ".join(labels[1:])))
        print("|" + " --- |" * (len(labels) + 3))
    for (config, traffic), (rows, notes) in instructions.items():
        core = rows["core"]
        what = {"token": "sending keep-alive", "plain": "no Connection header"}[traffic]
        cells = ["%.0f" % core] + ["%.0f (%+.0f, %+.2f%%)" % (rows[l], rows[l] - core, 100.0 * (rows[l] - core) / core)
                                   for l in labels[1:]]
        print("| %s | %s | %s | %s |" % (config, what, " | ".join(cells),
                                         ", ".join("%.1f" % notes[l]["note_outcome"] for l in labels[1:])))
    if throughput:
        print("\n| measure | core | with mod_keepalive | added | target |")
        print("| --- | --- | --- | --- | --- |")
        core = statistics.median(throughput["core"])
        mod = statistics.median(throughput["module"])
        print("| wrk requests/s (median) | %.0f | %.0f | ratio %.3f | ratio at least 0.98 |" % (core, mod, mod / core))
        # Each round's pair ran back to back: their ratio is free of the
        # machine's slower drifts; the spread says how well the ratio is known.
        pairs = [m / c for m, c in zip(throughput["module"], throughput["core"])]
        spread = statistics.stdev(pairs) if len(pairs) > 1 else 0.0
        print("\nper-round ratios module/core: %s" % " ".join("%.3f" % x for x in pairs))
        print("median %.3f, mean %.3f, standard deviation %.3f (standard error of the mean %.3f)"
              % (statistics.median(pairs), statistics.mean(pairs), spread, spread / len(pairs) ** 0.5))


if __name__ == "__main__":
    main()
