"""A short integration workload against "apache2 -X" (one process, prefork)
with mod_keepalive loaded, under valgrind memcheck.

The configuration is tests/harness/httpd.py's (HttpdServer generates it
and runs "apache2 -t" on it), with mod_lua, mod_status, mod_alias and these
additions: KeepAliveAdaptive On, the keepalive-status handler, <Location>s
with KeepAliveIdleTimeout, KeepAliveMaxRequests, KeepAliveDisableIf,
KeepAliveAdvertisedTimeout, KeepAliveHeader Never/OnRequest,
KeepAliveMaxLifetime and an ErrorDocument, a Redirect, a virtual host on a
second port with KeepAliveHTTP10 Off, and one on a third with none of the
module's directives (core decides alone; the module writes the Keep-Alive
fields into the header block core serialized). httpd runs as

  valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
           --show-leak-kinds=definite,possible
           --errors-for-leak-kinds=definite,possible --track-origins=yes
           --keep-debuginfo=yes --num-callers=40 --vgdb=no
           --xml=yes --xml-file=... apache2 -X -f CONF -d DIR

and serves, one connection at a time (-X has one worker): keep-alive
HTTP/1.1 requests, HTTP/1.0 with and without Connection: keep-alive,
pipelined requests, a 404, a HEAD, Connection: close, an idle timeout
(KeepAliveIdleTimeout 1 in a <Location>), a request budget, a condition,
advertised timeouts and header modes, a lifetime, an ErrorDocument, the
keepalive-status handler (Prometheus and JSON) and mod_status, a 400, a
POST with a body, a 405, Expect: 100-continue answered with 100 Continue,
and answered with a redirect before the body is read (closes), a client
that half-closes and one that goes away, the HTTP/1.0-off virtual host,
and at the end a graceful close: SIGWINCH ("apache2 -k graceful-stop")
while a slow mod_lua request is in progress; its response must say
Connection: close, and the -X process must then exit by itself (bounded
waits; SIGTERM, then SIGKILL if it does not). In -X mode httpd 2.4 takes
SIGTERM and SIGWINCH alike (it stops after the connection in progress) and
does not catch SIGUSR1 ("graceful" restart): that signal would kill it,
with no clean exit and no leak check.

Every response is checked (status, Connection and Keep-Alive headers, the
connection closed or kept). valgrind's XML report is then read: the errors
(invalid accesses, uninitialised values, bad frees, definite and possible
leaks) whose stacks (where it happened, where the block was allocated or
freed, where an uninitialised value came from) have a frame in
mod_keepalive.so are printed with their stacks and counted apart from the
others. Target: "errors in mod_keepalive: 0". The exit status is 0 only if
there are none, every check passed and httpd stopped by itself.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.harness.cli import prog
from tests.harness.httpd import (APACHE_BIN, DEFAULT_MODULE, HttpdServer,
                                 port_accepts, sleeping_lua_handler)
from tests.harness.rawhttp import HttpClientError, RawConnection, build_request

MODULE_OBJ = "mod_keepalive.so"
VALGRIND_EXIT = 99
SLOW_SECONDS = 4

SLOW_LUA = sleeping_lua_handler(SLOW_SECONDS)

DIRS = ("short", "budget", "noka", "adv", "never", "onreq", "life", "foreign", "pad")
FILES = {"htdocs/slow.lua": SLOW_LUA}
FILES.update({"htdocs/%s/x.txt" % d: b"x\n" for d in DIRS})

EXTRA_CONFIG = """\
KeepAliveAdaptive On
Redirect /expect-redirect /small.txt
<Files "slow.lua">
    SetHandler lua-script
</Files>
<Location /keepalive-status>
    SetHandler keepalive-status
</Location>
<Location /server-status>
    SetHandler server-status
</Location>
<Location /short>
    KeepAliveIdleTimeout 1
</Location>
<Location /budget>
    KeepAliveMaxRequests 3
</Location>
<Location /noka>
    KeepAliveDisableIf "%{HTTP_USER_AGENT} =~ /BadBot/"
</Location>
<Location /adv>
    KeepAliveAdvertisedTimeout 2
</Location>
<Location /never>
    KeepAliveHeader Never
</Location>
<Location /onreq>
    KeepAliveHeader OnRequest
</Location>
<Location /life>
    KeepAliveMaxLifetime 1
</Location>
<Location /ed>
    ErrorDocument 404 /index.html
</Location>
<VirtualHost 127.0.0.1:@PORT1@>
    ServerName other.test
    DocumentRoot "@DOCROOT@"
    KeepAliveHTTP10 Off
    KeepAliveTimeout 3
</VirtualHost>
# None of the module's directives: core decides alone, OBSERVE writes the
# fields into the header block core serialized.
<VirtualHost 127.0.0.1:@PORT2@>
    ServerName core.test
    DocumentRoot "@DOCROOT@"
    KeepAliveAdaptive Off
    <Location /foreign>
        Header set Keep-Alive "timeout=99"
        Header set Connection "keep-alive"
    </Location>
    <Location /pad>
        Header set X-Pad "expr=%{QUERY_STRING}"
    </Location>
</VirtualHost>
"""

KA = ("Connection", "keep-alive")


# -- the workload ------------------------------------------------------------
class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.step = ""

    def ok(self, cond, what, resp=None):
        if cond:
            self.passed += 1
        else:
            self.failed.append("%s: %s%s" % (self.step, what,
                                             "\n" + resp.describe() if resp else ""))
        return cond

    def kept(self, resp, timeout=None):
        """A persistent response: no close token, Keep-Alive as expected."""
        self.ok("close" not in resp.tokens("Connection"),
                "kept connection expected", resp)
        if timeout is not None:
            ka = resp.get("Keep-Alive", "")
            self.ok(ka.startswith("timeout=%d" % timeout),
                    "Keep-Alive: timeout=%d expected" % timeout, resp)

    def closing(self, resp):
        self.ok("close" in resp.tokens("Connection") and not resp.has("Keep-Alive"),
                "Connection: close without Keep-Alive expected", resp)


def workload(port, port_other, port_core, chk, on_slow_request):
    """Every step; each on its own connection(s), closed before the next
    (apache2 -X serves one connection at a time)."""
    T = 30          # seconds for any response: valgrind is slow

    def conn(p=port):
        return RawConnection("127.0.0.1", p, timeout=T)

    def get(path="/index.html", **kw):
        return build_request(path=path, **kw)

    steps = []

    def step(fn):
        steps.append(fn)
        return fn

    @step
    def keepalive_http11():
        with conn() as c:
            for i in range(10):
                r = c.request(get())
                chk.ok(r.status == 200, "200", r)
                chk.ok(r.get("Keep-Alive") == "timeout=5, max=%d" % (100 - i),
                       "Keep-Alive: timeout=5, max=%d" % (100 - i), r)

    @step
    def http10():
        with conn() as c:
            for _ in range(3):
                r = c.request(get(version="HTTP/1.0", headers=[KA]))
                chk.ok(r.status == 200 and r.has("Keep-Alive"), "HTTP/1.0 kept", r)
            r = c.request(get(version="HTTP/1.0"))
            chk.closing(r)
            chk.ok(c.is_closed(T), "closed after HTTP/1.0 without keep-alive")

    @step
    def pipelined():
        reqs = [get(), get("/small.txt"), get("/nope.html"),
                build_request("HEAD", "/index.html")] * 8
        with conn() as c:
            c.send(b"".join(reqs))
            for req in reqs:
                r = c.read_response(head_only=req.startswith(b"HEAD"))
                chk.ok(r.status in (200, 404), "pipelined response", r)
                chk.kept(r)

    @step
    def not_found_and_head():
        with conn() as c:
            r = c.request(get("/nope.html"))
            chk.ok(r.status == 404, "404", r)
            chk.kept(r, 5)
            r = c.request(build_request("HEAD", "/index.html"))
            chk.ok(r.status == 200 and r.body == b"", "HEAD 200 without body", r)
            chk.kept(r, 5)

    @step
    def connection_close():
        with conn() as c:
            r = c.request(get(headers=[("Connection", "close")]))
            chk.closing(r)
            chk.ok(c.is_closed(T), "closed after Connection: close")

    @step
    def idle_timeout():
        with conn() as c:
            r = c.request(get("/short/x.txt"))
            chk.kept(r, 1)
            waited = c.wait_for_close(T)
            chk.ok(waited is not None and waited >= 0.9,
                   "closed by the 1 s idle timeout (after %s s)" % waited)

    @step
    def budget():
        # KeepAliveMaxRequests 3: max=3, max=2, max=1, then Connection: close
        with conn() as c:
            for left in (3, 2, 1):
                r = c.request(get("/budget/x.txt"))
                chk.ok(r.get("Keep-Alive") == "timeout=5, max=%d" % left,
                       "Keep-Alive: timeout=5, max=%d" % left, r)
            chk.closing(c.request(get("/budget/x.txt")))
            chk.ok(c.is_closed(T), "closed after the budget")

    @step
    def disable_if():
        with conn() as c:
            r = c.request(get("/noka/x.txt", headers=[("User-Agent", "Good")]))
            chk.kept(r, 5)
            r = c.request(get("/noka/x.txt", headers=[("User-Agent", "BadBot")]))
            chk.closing(r)

    @step
    def header_modes():
        with conn() as c:
            r = c.request(get("/adv/x.txt"))
            chk.kept(r, 2)
            r = c.request(get("/never/x.txt", headers=[KA]))
            chk.kept(r)
            chk.ok(not r.has("Keep-Alive"), "KeepAliveHeader Never", r)
            r = c.request(get("/onreq/x.txt"))
            chk.ok(not r.has("Keep-Alive"), "OnRequest without the token", r)
            r = c.request(get("/onreq/x.txt", headers=[KA]))
            chk.kept(r, 5)

    @step
    def lifetime():
        with conn() as c:
            r = c.request(get("/life/x.txt"))
            chk.kept(r, 5)
            time.sleep(1.5)
            r = c.request(get("/life/x.txt"))
            chk.closing(r)

    @step
    def error_document():
        with conn() as c:
            r = c.request(get("/ed/missing"))
            chk.ok(r.status == 404 and b"mod_keepalive test" in r.body,
                   "ErrorDocument 404", r)
            chk.kept(r, 5)

    @step
    def status_pages():
        with conn() as c:
            r = c.request(get("/keepalive-status"))
            chk.ok(r.status == 200 and b"keepalive_requests_total" in r.body,
                   "keepalive-status", r)
            r = c.request(get("/keepalive-status?format=json"))
            try:
                json.loads(r.body)
                chk.ok(r.status == 200, "keepalive-status JSON", r)
            except ValueError:
                chk.ok(False, "keepalive-status JSON parses", r)
            r = c.request(get("/server-status?auto"))
            chk.ok(b"KeepAliveModRequests" in r.body, "server-status?auto", r)
            r = c.request(get("/server-status"))
            chk.ok(r.status == 200, "server-status", r)

    @step
    def error_paths():
        with conn() as c:
            r = c.request(get(headers=["No-Colon-In-This-Line"]))
            chk.ok(r.status == 400, "400", r)
            chk.closing(r)
        with conn() as c:
            r = c.request(build_request("POST", "/small.txt", body=b"x" * 100))
            chk.ok(r.status == 200, "POST with a body to a static file", r)
            chk.kept(r, 5)
            r = c.request(build_request("DELETE", "/small.txt"))
            chk.ok(r.status == 405, "405", r)
            chk.kept(r, 5)
        with conn() as c:
            # 100 Continue, then the body: kept
            c.send(build_request("POST", "/small.txt", headers=[
                ("Expect", "100-continue"), ("Content-Length", "5")]))
            r = c.read_response()
            chk.ok(r.status == 100, "100 Continue", r)
            c.send(b"hello")
            r = c.read_response()
            chk.ok(r.status == 200, "200 after 100 Continue", r)
            chk.kept(r, 5)
            # a redirect before anything reads the announced body: closed
            r = c.request(build_request("POST", "/expect-redirect", headers=[
                ("Expect", "100-continue"), ("Content-Length", "5")]))
            chk.ok(r.status == 302, "302 to an Expect: 100-continue request", r)
            chk.closing(r)

    @step
    def half_close_and_gone():
        with conn() as c:
            c.send(get())
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            chk.ok(r.status == 200, "response after half-close", r)
            chk.ok(c.is_closed(T), "closed after the client half-closed")
        with conn() as c:
            r = c.request(get())
            chk.kept(r, 5)
        # the client goes away while the connection idles

    @step
    def vhost_http10_off():
        with conn(port_other) as c:
            r = c.request(get(version="HTTP/1.0", headers=[KA]))
            chk.closing(r)
        with conn(port_other) as c:
            r = c.request(get())
            chk.kept(r, 3)

    @step
    def core_decides_alone():
        with conn(port_core) as c:
            for i in range(3):  # the fields written into core's buffer
                r = c.request(get(headers=[KA] if i == 1 else []))
                chk.ok(r.get("Keep-Alive") == "timeout=5, max=%d" % (100 - i),
                       "Keep-Alive: timeout=5, max=%d" % (100 - i), r)
            left = 97
            # Blocks that nearly fill core's buffer: the fields go in place,
            # or into a bucket of their own.
            for size in range(7680, 7900, 20):
                pad = "p" * size
                r = c.request(get("/pad/x.txt?" + pad))
                chk.ok(r.get("X-Pad") == pad and r.body == b"x\n", "padded response intact", r)
                chk.ok(r.get("Keep-Alive") == "timeout=5, max=%d" % left, "Keep-Alive, padded", r)
                left -= 1
            r = c.request(get("/foreign/x.txt"))
            chk.ok(r.get_all("Keep-Alive") == ["timeout=5, max=%d" % left] and
                   r.get_all("Connection") == ["Keep-Alive"], "a handler's fields replaced", r)
            r = c.request(build_request("HEAD", "/index.html"), head_only=True)
            chk.kept(r, 5)
            r = c.request(get("/nope.html"))
            chk.ok(r.status == 404, "404", r)
            chk.kept(r, 5)
            r = c.request(get("/foreign/x.txt", headers=[("Connection", "close")]))
            chk.closing(r)
            chk.ok(c.is_closed(T), "closed after Connection: close")
        with conn(port_core) as c:
            r = c.request(get(version="HTTP/1.0", headers=[KA]))
            chk.kept(r, 5)
            r = c.request(get(version="HTTP/1.0"))
            chk.closing(r)

    @step
    def graceful_close():
        with conn() as c:
            r = c.request(get())
            chk.kept(r, 5)
            c.send(get("/slow.lua"))
            time.sleep(SLOW_SECONDS / 2.0)
            on_slow_request()
            r = c.read_response(timeout=T + SLOW_SECONDS)
            chk.ok(r.status == 200 and r.body == b"slow\n",
                   "the request in progress is answered", r)
            chk.closing(r)
            chk.ok(c.is_closed(T), "closed after the graceful close")

    for fn in steps:
        chk.step = fn.__name__
        try:
            fn()
        except (HttpClientError, OSError) as e:
            chk.failed.append("%s: %s: %s" % (fn.__name__, type(e).__name__, e))
        print("  %-22s checks passed %d, failed %d" % (
            fn.__name__, chk.passed, len(chk.failed)), flush=True)


# -- valgrind ----------------------------------------------------------------
def valgrind_cmd(args, server, xml_path, log_path):
    cmd = ["valgrind", "--tool=memcheck", "--error-exitcode=%d" % VALGRIND_EXIT,
           "--leak-check=full", "--show-leak-kinds=definite,possible",
           "--errors-for-leak-kinds=definite,possible", "--track-origins=yes",
           "--keep-debuginfo=yes", "--num-callers=40", "--trace-children=no",
           "--vgdb=no",
           "--xml=yes", "--xml-file=%s" % xml_path, "--log-file=%s" % log_path]
    for s in args.suppressions:
        cmd.append("--suppressions=%s" % s)
    return cmd + [APACHE_BIN, "-X", "-f", str(server.conf_path),
                  "-d", str(server.dir)]


def frame_text(frame):
    get = lambda tag: frame.findtext(tag) or ""
    where = get("file") and "%s:%s" % (get("file"), get("line"))
    return "%s %s (%s)" % (get("ip"), get("fn") or "???",
                           where or os.path.basename(get("obj")))


def read_report(xml_path):
    """[(unique, count, kind, what, [stacks of frame texts], involves module)]"""
    text = Path(xml_path).read_text(errors="replace")
    # valgrind may leave the document unterminated if it was killed
    if "</valgrindoutput>" not in text:
        text += "\n</valgrindoutput>\n"
    root = ET.fromstring(text)
    counts = {}
    for pair in root.iter("pair"):
        counts[pair.findtext("unique")] = int(pair.findtext("count"))
    errors = []
    for err in root.findall("error"):
        unique = err.findtext("unique")
        what = (err.findtext("what") or err.findtext("xwhat/text") or "")
        stacks, involved = [], False
        for stack in err.iter("stack"):
            frames = list(stack.findall("frame"))
            involved |= any(MODULE_OBJ in (f.findtext("obj") or "")
                            for f in frames)
            stacks.append([frame_text(f) for f in frames])
        auxwhat = [a.text or "" for a in err.findall("auxwhat")]
        auxwhat += [a.findtext("text") or "" for a in err.findall("xauxwhat")]
        # leak records are reported once, with no <errorcounts> entry
        errors.append({"unique": unique, "count": counts.get(unique, 1),
                       "kind": err.findtext("kind"), "what": what,
                       "auxwhat": auxwhat, "stacks": stacks,
                       "module": involved})
    return errors


def describe(err, frames=12):
    out = ["%s (%s, %d occurrence%s): %s" % (
        err["unique"], err["kind"], err["count"],
        "" if err["count"] == 1 else "s", err["what"])]
    for i, stack in enumerate(err["stacks"]):
        if i:
            out.append("  %s" % (err["auxwhat"][i - 1]
                                 if i - 1 < len(err["auxwhat"]) else "and"))
        out += ["    " + f for f in stack[:frames]]
        if len(stack) > frames:
            out.append("    ... %d more frames" % (len(stack) - frames))
    return "\n".join(out)


def wait_exit(proc, seconds):
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def main():
    p = argparse.ArgumentParser(
        prog=prog(),
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--module", default=str(DEFAULT_MODULE))
    p.add_argument("--suppressions", action="append", default=[],
                   help="a valgrind suppressions file (repeatable)")
    p.add_argument("--start-timeout", type=float, default=120,
                   help="seconds httpd may take to listen under valgrind")
    p.add_argument("--stop-timeout", type=float, default=60,
                   help="seconds to wait for it to exit, before SIGTERM and "
                        "again before SIGKILL")
    p.add_argument("--keep", action="store_true",
                   help="keep the server directory (config, logs, valgrind "
                        "XML) even if all is well")
    p.add_argument("--show-others", type=int, default=5,
                   help="print the stacks of this many errors that do not "
                        "involve the module")
    args = p.parse_args()
    args.module = Path(args.module).resolve()
    if not args.module.is_file():
        p.error("%s is not built (run make)" % args.module)
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode:
        p.error("valgrind is not installed (apt-get install valgrind)")

    server = HttpdServer("prefork", args.module, keepalive=("On", "5", "100"),
                         extra_config=EXTRA_CONFIG, extra_modules=["lua", "status", "alias"],
                         files=FILES, extra_ports=2, name="valgrind")
    test = server.configtest()
    if test.returncode != 0:
        print("apache2 -t failed:\n%s%s" % (test.stdout, test.stderr))
        server.cleanup()
        return 2
    xml_path = server.dir / "logs" / "valgrind.xml"
    log_path = server.dir / "logs" / "valgrind.log"
    cmd = valgrind_cmd(args, server, xml_path, log_path)
    print("running: %s" % " ".join(cmd), flush=True)
    stdio = open(server.stdio_path, "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdio,
                            stderr=stdio, start_new_session=True,
                            env=server._env())
    stdio.close()
    chk = Checks()
    stop_note = "not started"
    started = time.monotonic()
    try:
        deadline = time.monotonic() + args.start_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if all(port_accepts(p) for p in [server.port] + list(server.extra_ports)):
                break
            time.sleep(0.5)
        if proc.poll() is not None or time.monotonic() >= deadline:
            chk.failed.append("httpd under valgrind did not start listening "
                              "(exit status %s)" % proc.poll())
        else:
            print("listening after %.0f s; workload:" % (time.monotonic() - started),
                  flush=True)
            signalled = []

            def graceful():
                proc.send_signal(signal.SIGWINCH)
                signalled.append(time.monotonic())
            workload(server.port, server.extra_ports[0], server.extra_ports[1], chk, graceful)
            if not signalled:
                graceful()
    finally:
        if wait_exit(proc, args.stop_timeout):
            stop_note = "exited by itself after the graceful signal"
        else:
            proc.send_signal(signal.SIGTERM)
            if wait_exit(proc, args.stop_timeout):
                stop_note = "did NOT exit after SIGWINCH; exited after SIGTERM"
            else:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                stop_note = "did NOT exit after SIGWINCH nor SIGTERM: SIGKILLed"
    clean_stop = stop_note.startswith("exited by itself")
    exit_status = proc.returncode

    errors = read_report(xml_path) if xml_path.exists() else []
    mine = [e for e in errors if e["module"]]
    others = [e for e in errors if not e["module"]]
    log_problems = server.log_problems(server.error_log())
    print()
    print("httpd: %s; exit status %s (valgrind --error-exitcode=%d); %.0f s in all"
          % (stop_note, exit_status, VALGRIND_EXIT, time.monotonic() - started))
    print("requests logged: %d; workload checks: %d passed, %d failed"
          % (len(server.access_log().splitlines()), chk.passed, len(chk.failed)))
    for f in chk.failed:
        print("  FAILED " + f.replace("\n", "\n    "))
    for line in log_problems:
        print("  error log: " + line)
    if mine:
        print("\nerrors whose stacks involve %s:" % MODULE_OBJ)
        for e in mine:
            print(describe(e))
    if others:
        print("\nerrors not involving %s (first %d of %d):"
              % (MODULE_OBJ, min(args.show_others, len(others)), len(others)))
        for e in others[:args.show_others]:
            print(describe(e, frames=8))
    print()
    print("errors in mod_keepalive: %d (%d occurrences)"
          % (len(mine), sum(e["count"] for e in mine)))
    print("errors in total: %d (%d occurrences)"
          % (len(errors), sum(e["count"] for e in errors)))
    if not xml_path.exists():
        print("no valgrind report: %s missing" % xml_path)
    good = (not mine and not chk.failed and clean_stop and not log_problems
            and xml_path.exists())
    if good and not others and not args.keep:
        server.cleanup()
    else:
        print("server directory kept: %s (valgrind XML: %s)" % (server.dir, xml_path))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
