#!/usr/bin/python3
"""httpd's own test suite (httpd-tests, Perl Apache::Test) against Debian's
apache2, twice: without mod_keepalive and with it loaded, then a comparison
per test file and per subtest.  `make test-httpd-suite` runs it; see
docs/testing.md, "httpd's own test suite".

Both runs load every module in Debian's module directory (one MPM, event,
Debian's default) from the same generated httpd.conf; the second run adds
exactly one line, `LoadModule keepalive_module <module>`, through
Apache::Test's -httpd_conf_extra.  The suite is extracted outside the
clone, into $HTTPD_SUITE_DIR (default: ${XDG_CACHE_HOME:-~/.cache}/
mod_keepalive/httpd-suite, or /var/cache/mod_keepalive/httpd-suite as
root), and run as an unprivileged user (Apache::Test refuses root): as
root, the system user mod-keepalive-test, created if missing.

Exit status: 0 when every difference between the two runs is in ALLOWED
below, 1 on any other difference, 2 when a run could not be made at all.
"""

import argparse
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODULE = REPO_ROOT / "build" / "mod_keepalive.so"
DEFAULT_TARBALL = Path("/work/shared/httpd-src/httpd-tests.tar.xz")
APXS = "/usr/bin/apxs"
MODULE_DIR = Path("/usr/lib/apache2/modules")
# One MPM per server: Debian's default.
MPM = "event"
# Modules in MODULE_DIR that neither run loads, with the reason.
NOT_LOADED = {
    # Installed only because Apache::Test ships in its package. The suite
    # runs through Apache::TestRun, not mod_perl's TestRunPerl, so mod_perl
    # would be loaded without its configuration, and then its request pool
    # cleanup (modperl_config_req_cleanup -> modperl_callback_run_handlers)
    # segfaults httpd's children: about 150 crashes per full run, without
    # mod_keepalive.
    "mod_perl.so": "carrier of Apache::Test; crashes unconfigured",
}
TEST_USER = "mod-keepalive-test"

# The keep-alive subset (issue 14): the tests about connections, request
# limits, proxies and the module list.
SUBSET = [
    "t/http11",
    "t/apache/limits.t",
    "t/apache/cfg_getline.t",
    "t/modules/status.t",
    "t/modules/remoteip.t",
    "t/modules/proxy.t",
    "t/modules/proxy_balancer.t",
    "t/modules/proxy_fcgi.t",
    "t/modules/proxy_websockets.t",
    "t/modules/proxy_websockets_ssl.t",
    "t/protocol",
    "t/modules/info.t",
]

# Differences the module makes on purpose: (test file, subtest number or
# None for the whole file) -> the reason, also listed in docs/testing.md.
# Nothing that is a bug belongs here.
ALLOWED = {
}

# Bounds on every step (seconds).
TIMEOUTS = {"prepare": 300, "configure": 300, "subset": 900, "full": 3600,
            "stop": 60}


class RunError(RuntimeError):
    pass


def log(msg):
    print("httpd-suite: " + msg, flush=True)


# --- where and as whom ------------------------------------------------------

def default_work_dir():
    if os.environ.get("HTTPD_SUITE_DIR"):
        return Path(os.environ["HTTPD_SUITE_DIR"])
    if os.geteuid() == 0:
        # /root is not readable by the unprivileged user the suite runs as.
        return Path("/var/cache/mod_keepalive/httpd-suite")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "mod_keepalive" / "httpd-suite"


def ensure_test_user():
    """As root: the system user the suite runs as (created if missing)."""
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        log("creating system user " + TEST_USER)
        subprocess.run(["useradd", "--system", "--user-group",
                        "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", TEST_USER],
                       check=True, timeout=60)
    return pwd.getpwnam(TEST_USER)


class Runner:
    """Runs commands as the unprivileged user, each in its own session."""

    def __init__(self, work):
        self.work = work
        self.as_root = os.geteuid() == 0
        self.user = ensure_test_user() if self.as_root else None

    def env(self):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "HOME": str(self.work), "LANG": "C.UTF-8",
                "TMPDIR": str(self.work / "tmp")}

    def argv(self, cmd):
        if self.as_root:
            return ["setpriv", "--reuid", str(self.user.pw_uid), "--regid",
                    str(self.user.pw_gid), "--init-groups", "--"] + cmd
        return cmd

    def run(self, cmd, cwd, timeout, out=None):
        """Runs cmd, stdout and stderr to the file `out` (or captured);
        kills its whole session on timeout.  Returns (rc, captured)."""
        outf = open(out, "w") if out else subprocess.PIPE
        try:
            proc = subprocess.Popen(self.argv(cmd), cwd=cwd, env=self.env(),
                                    stdin=subprocess.DEVNULL, stdout=outf,
                                    stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                captured, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid)
                proc.communicate(timeout=30)
                raise RunError("%s: no end after %ds, killed"
                               % (" ".join(cmd), timeout))
            finally:
                kill_group(proc.pid)
        finally:
            if out:
                outf.close()
        return proc.returncode, (captured.decode(errors="replace")
                                 if captured else "")

    def check(self, cmd, cwd, timeout):
        rc, text = self.run(cmd, cwd, timeout)
        if rc != 0:
            raise RunError("%s failed (exit %d):\n%s"
                           % (" ".join(cmd), rc, text[-4000:]))
        return text


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def processes_mentioning(text):
    """PIDs of processes whose command line contains `text`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry))
    return pids


def stop_servers(runner, tree):
    """Stops the httpd of one run tree, whatever state it is in: t/TEST
    -stop, then any process still running from this tree (httpd with its
    config, its piped loggers and RewriteMap programs, test clients)."""
    if (tree / "t" / "TEST").exists() and (tree / "t" / "logs" / "httpd.pid").exists():
        try:
            runner.run(["t/TEST", "-stop"], tree, TIMEOUTS["stop"])
        except RunError as e:
            log(str(e))
    marker = str(tree / "t") + "/"
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = processes_mentioning(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and processes_mentioning(marker):
            time.sleep(0.2)
    if processes_mentioning(marker):
        raise RunError("httpd of %s still running after SIGKILL" % tree)


# --- preparing the runs -----------------------------------------------------

def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def extract(runner, tarball, work):
    """The suite, extracted once per tarball checksum into work/src."""
    src = work / "src"
    stamp = work / "src.sha256"
    digest = sha256(tarball)
    if (src / "httpd-tests" / "Makefile.PL").exists() and stamp.exists() \
            and stamp.read_text().strip() == digest:
        return src / "httpd-tests"
    log("extracting %s into %s" % (tarball, src))
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    chown(runner, src)
    runner.check(["tar", "-xJf", str(tarball), "-C", str(src)], work,
                 TIMEOUTS["prepare"])
    tree = src / "httpd-tests"
    if not (tree / "Makefile.PL").exists():
        raise RunError("%s has no httpd-tests/Makefile.PL" % tarball)
    stamp.write_text(digest + "\n")
    return tree


def chown(runner, path):
    if runner.as_root:
        os.chown(path, runner.user.pw_uid, runner.user.pw_gid)


def module_symbol(so):
    """mod_foo.so -> foo_module (the name every Debian module uses)."""
    return so.name[len("mod_"):-len(".so")] + "_module"


def base_config(work):
    """The httpd.conf both runs inherit: every module Debian ships, one MPM."""
    lines = ["# Generated by tests/httpd-suite/run.py: every module in %s,"
             % MODULE_DIR, "# the %s MPM only." % MPM]
    for so in sorted(MODULE_DIR.glob("mod_*.so")):
        if so.name.startswith("mod_mpm_") and so.name != "mod_mpm_%s.so" % MPM:
            continue
        if so.name in NOT_LOADED:
            lines.append("# not loaded: %s (%s)" % (so, NOT_LOADED[so.name]))
            continue
        lines.append("LoadModule %s %s" % (module_symbol(so), so))
    lines.append("TypesConfig /etc/mime.types")
    path = work / "httpd.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def keepalive_config(work, module):
    path = work / "keepalive.conf"
    path.write_text("LoadModule keepalive_module %s\n" % module)
    return path


LISTEN_RE = re.compile(r"^(\s*Listen\s+)(\S+)", re.MULTILINE)


def force_loopback(conf_dir):
    """Apache::Test writes `Listen 0.0.0.0:port`: make every Listen of the
    generated configuration (t/conf and t/conf/ssl) 127.0.0.1."""
    listens = []
    for conf in sorted(conf_dir.rglob("*.conf")):
        text = conf.read_text()
        new = LISTEN_RE.sub(lambda m: m.group(1) + "127.0.0.1:"
                            + m.group(2).rsplit(":", 1)[-1], text)
        if new != text:
            conf.write_text(new)
        listens += LISTEN_RE.findall(new)
    if not listens:
        raise RunError("no Listen directive in %s" % conf_dir)
    return [addr for _, addr in listens]


def check_loopback(conf_dir):
    """Every Listen of the configuration about to be run is on 127.0.0.1."""
    for conf in sorted(conf_dir.rglob("*.conf")):
        for _, addr in LISTEN_RE.findall(conf.read_text()):
            if not addr.startswith("127.0.0.1:"):
                raise RunError("%s listens on %s, not 127.0.0.1" % (conf, addr))


LOADMODULE_RE = re.compile(r"^\s*LoadModule\s+(\w+)\s+\"?([^\"\s]+)",
                           re.MULTILINE)


def loaded_modules(conf):
    return dict(LOADMODULE_RE.findall(conf.read_text()))


def prepare_tree(runner, src, work, name, httpd_conf, extra_conf):
    """A fresh copy of the suite for one run, configured; returns it."""
    tree = work / "runs" / name
    shutil.rmtree(tree, ignore_errors=True)
    (work / "runs").mkdir(exist_ok=True)
    chown(runner, work / "runs")
    runner.check(["cp", "-a", str(src), str(tree)], work, TIMEOUTS["prepare"])
    runner.check(["perl", "Makefile.PL", "-apxs", APXS], tree,
                 TIMEOUTS["prepare"])
    cmd = ["t/TEST", "-apxs", APXS, "-httpd_conf", str(httpd_conf)]
    if extra_conf:
        cmd += ["-httpd_conf_extra", str(extra_conf)]
    runner.check(cmd + ["-configure"], tree, TIMEOUTS["configure"])
    log("%s: %d Listen directives, all on 127.0.0.1"
        % (name, len(force_loopback(tree / "t" / "conf"))))
    return tree


# --- TAP --------------------------------------------------------------------

FILE_RE = re.compile(r"^(t/\S+\.t) \.+ ?(.*)$")
PLAN_RE = re.compile(r"^1\.\.(\d+)(.*)$")
# Test.pm announces its expected failures in the plan: "1..140 todo 53 54;".
PLAN_TODO_RE = re.compile(r"^\s*todo\s+([\d\s]+);")
PLAN_SKIP_RE = re.compile(r"#\s*skip\S*\s*(.*)", re.I)
# Where TAP::Harness's summary of the whole run begins.
SUMMARY_RE = re.compile(r"^(Test Summary Report|All tests successful|Files=\d+)")
TEST_RE = re.compile(r"^(not )?ok (\d+)\b(.*)$")


class FileResult:
    def __init__(self, name):
        self.name = name
        self.planned = None
        self.skip_reason = None
        self.passed = set()
        self.failed = set()
        self.skipped = set()
        self.todo = set()
        self.verdict = None        # the harness's last line for the file

    @property
    def status(self):
        if self.skip_reason is not None and not (self.passed or self.failed):
            return "skipped"
        ran = self.passed | self.failed
        if self.failed or self.verdict not in ("ok", "skipped") \
                or (self.planned is not None and len(ran) != self.planned):
            return "failed"
        return "ok"

    def missing(self):
        if self.planned is None:
            return set()
        return set(range(1, self.planned + 1)) - self.passed - self.failed

    def describe(self):
        s = self.status
        if s == "skipped":
            return "skipped"
        if s == "ok":
            return "ok %d" % len(self.passed) + \
                (" (%d skip)" % len(self.skipped) if self.skipped else "")
        bad = sorted(self.failed)
        text = "FAIL " + ranges(bad)
        if self.missing():
            text += " missing %d" % len(self.missing())
        if not bad and not self.missing():
            text += "(%s)" % (self.verdict or "no verdict")
        return text + " /%s" % (self.planned if self.planned is not None else "?")


def ranges(numbers):
    """[1, 2, 3, 5] -> "1-3,5"."""
    out = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in out)


def parse_tap(text):
    """Per-file results from `t/TEST -verbose` output (TAP::Harness)."""
    results = {}
    current = None
    for line in text.splitlines():
        m = FILE_RE.match(line)
        if m:
            current = results.setdefault(m.group(1), FileResult(m.group(1)))
            line = m.group(2)
            if not line:
                continue
        if current is None:
            continue
        if SUMMARY_RE.match(line):
            break
        m = PLAN_RE.match(line)
        if m:
            current.planned = int(m.group(1))
            todo = PLAN_TODO_RE.match(m.group(2))
            if todo:
                current.todo = set(map(int, todo.group(1).split()))
            if current.planned == 0:
                skip = PLAN_SKIP_RE.search(m.group(2))
                current.skip_reason = skip.group(1) if skip else ""
            continue
        m = TEST_RE.match(line)
        if m:
            num, rest = int(m.group(2)), m.group(3)
            directive = re.search(r"#\s*(skip|todo)\b", rest, re.I)
            todo = num in current.todo or \
                (directive and directive.group(1).lower() == "todo")
            if m.group(1) and not todo:
                current.failed.add(num)
            else:
                current.passed.add(num)
                if directive and directive.group(1).lower() == "skip":
                    current.skipped.add(num)
            continue
        if line == "ok":
            current.verdict = "ok"
        elif line.startswith("skipped"):
            current.verdict = "skipped"
            if current.skip_reason is None:
                current.skip_reason = line.partition(":")[2].strip()
        elif line.startswith(("Failed ", "Dubious", "No subtests run",
                              "Bad plan", "Parse errors")):
            current.verdict = line
    return results


# --- comparing --------------------------------------------------------------

def compare(without, withm):
    """Rows (file, without, with, verdict) and the unexplained differences."""
    rows, unexplained, explained = [], [], []
    for name in sorted(set(without) | set(withm)):
        a, b = without.get(name), withm.get(name)
        da = a.describe() if a else "not run"
        db = b.describe() if b else "not run"
        if a and b and a.status == b.status and a.failed == b.failed \
                and a.missing() == b.missing() and a.planned == b.planned:
            verdict = "same" if a.status != "failed" else "same (fails both ways)"
        else:
            diffs = []
            if a and b:
                changed = (a.failed ^ b.failed) | (a.missing() ^ b.missing())
                diffs = [(name, n) for n in sorted(changed)]
            if not diffs:
                diffs = [(name, None)]
            reasons = [ALLOWED.get(d) or ALLOWED.get((name, None)) for d in diffs]
            if all(reasons):
                verdict = "allowed: " + "; ".join(sorted(set(reasons)))
                explained += diffs
            else:
                verdict = "DIFFERENT"
                unexplained += [d for d, r in zip(diffs, reasons) if not r]
        rows.append((name, da, db, verdict))
    return rows, unexplained, explained


def counts(results):
    c = {"ok": 0, "failed": 0, "skipped": 0}
    for r in results.values():
        c[r.status] += 1
    return c


def print_table(rows, without, withm):
    w = max([len(r[0]) for r in rows] + [9])
    wa = max([len(r[1]) for r in rows] + [15])
    wb = max([len(r[2]) for r in rows] + [12])
    print("%-*s  %-*s  %-*s  %s" % (w, "test file", wa, "without module",
                                    wb, "with module", "comparison"))
    print("%s  %s  %s  %s" % ("-" * w, "-" * wa, "-" * wb, "-" * 10))
    for name, a, b, verdict in rows:
        print("%-*s  %-*s  %-*s  %s" % (w, name, wa, a, wb, b, verdict))
    ca, cb = counts(without), counts(withm)
    print()
    print("files: %d without the module, %d with it" % (len(without), len(withm)))
    for k in ("ok", "failed", "skipped"):
        print("  %-8s %4d without, %4d with" % (k, ca[k], cb[k]))


# --- main -------------------------------------------------------------------

def run_suite(runner, tree, tests, mode, out):
    stop_servers(runner, tree)
    check_loopback(tree / "t" / "conf")
    log("running %s: t/TEST -verbose %s (output: %s)"
        % (tree.name, " ".join(tests) if tests else "(all)", out))
    started = time.monotonic()
    try:
        rc, _ = runner.run(["t/TEST", "-verbose"] + tests, tree,
                           TIMEOUTS[mode], out=out)
    finally:
        stop_servers(runner, tree)
    log("%s: exit %d after %.0fs" % (tree.name, rc, time.monotonic() - started))
    text = Path(out).read_text(errors="replace")
    # t/TEST must have run the configuration made loopback-only above,
    # not one it generated again.
    if "forcing re-configuration" in text:
        raise RunError("t/TEST configured %s again; see %s" % (tree.name, out))
    check_loopback(tree / "t" / "conf")
    results = parse_tap(text)
    if not results:
        raise RunError("no test file ran in %s; see %s" % (tree.name, out))
    return results, crashes(tree)


def crashes(tree):
    """httpd processes that died of a signal during the run (error_log)."""
    try:
        text = (tree / "t" / "logs" / "error_log").read_text(errors="replace")
    except OSError:
        return 0
    return len(re.findall(r"AH00051: child pid \d+ exit signal", text))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("subset", "full"),
                    default=os.environ.get("HTTPD_SUITE", "subset") or "subset")
    ap.add_argument("--module", default=os.environ.get("KEEPALIVE_MODULE")
                    or str(DEFAULT_MODULE))
    ap.add_argument("--tarball", default=os.environ.get("HTTPD_TESTS_TARBALL")
                    or str(DEFAULT_TARBALL))
    ap.add_argument("--work", default=str(default_work_dir()))
    ap.add_argument("tests", nargs="*",
                    help="test files or directories instead of the mode's")
    args = ap.parse_args()

    module = Path(args.module).resolve()
    if not module.is_file():
        log("no module at %s: run make first" % module)
        return 2
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work)
    chown(runner, work)
    (work / "tmp").mkdir(exist_ok=True)
    chown(runner, work / "tmp")
    if runner.run(["test", "-r", str(module)], work, 30)[0] != 0:
        log("%s is not readable by the test user" % module)
        return 2
    tests = args.tests or (SUBSET if args.mode == "subset" else [])

    def interrupted(signum, _frame):
        raise RunError("interrupted by signal %d" % signum)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    trees = []
    try:
        src = extract(runner, Path(args.tarball), work)
        httpd_conf = base_config(work)
        ka_conf = keepalive_config(work, module)
        results, crashed = {}, {}
        for name, extra in (("without", None), ("with", ka_conf)):
            tree = work / "runs" / name
            trees.append(tree)
            stop_servers(runner, tree)
            log("configuring %s" % tree)
            prepare_tree(runner, src, work, name, httpd_conf, extra)
            results[name], crashed[name] = run_suite(
                runner, tree, tests, args.mode,
                work / ("%s.%s.log" % (args.mode, name)))
        mods = {n: loaded_modules(work / "runs" / n / "t" / "conf" / "httpd.conf")
                for n in ("without", "with")}
        extra_mods = set(mods["with"]) - set(mods["without"])
        if set(mods["without"]) - set(mods["with"]) or \
                extra_mods != {"keepalive_module"} or \
                mods["with"]["keepalive_module"] != str(module):
            raise RunError("the runs do not load the same modules plus "
                           "keepalive_module %s: %s vs %s"
                           % (module, sorted(mods["without"]), sorted(mods["with"])))
    except RunError as e:
        log("error: %s" % e)
        return 2
    finally:
        for tree in trees:
            try:
                stop_servers(runner, tree)
            except RunError as e:
                log("error: %s" % e)

    rows, unexplained, explained = compare(results["without"], results["with"])
    print()
    print("httpd-tests (%s), Debian apache2 %s MPM, %d modules loaded; "
          "with module: %s" % (args.mode, MPM, len(mods["without"]), module))
    print()
    print_table(rows, results["without"], results["with"])
    print("httpd children killed by a signal (error_log): %d without, %d with"
          % (crashed["without"], crashed["with"]))
    print("differences: %d unexplained, %d allowed"
          % (len(unexplained), len(explained)))
    for name, num in unexplained:
        print("  DIFFERENT: %s%s" % (name, "" if num is None else " subtest %d" % num))
    print("logs: %s" % " ".join(str(work / ("%s.%s.log" % (args.mode, n)))
                                for n in ("without", "with")))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
