"""make test-compat: the module on every httpd 2.4 a distribution ships.

For each source tarball in ../shared/httpd-src/ (checked against its
SHA256SUMS), as run from the repository root:

  1. httpd is built from the tarball against Debian's APR and APR-util, with
     every MPM and module shared (mod_http2 and mod_lua among them) and, as
     in Debian's apache2, unixd, log_config, logio, version and watchdog
     built in, so that the project's generated configurations run unchanged.
     The build is cached outside the clone, under
     $KEEPALIVE_COMPAT_CACHE (default ~/.cache/mod_keepalive/compat), in a
     directory named after the tarball's checksum; a second run reuses it.
     A cached build that is incomplete or no longer runs is built again.
  2. The module is built from this clone with that httpd's own apxs, and
     installed with "make install" (apxs -i into that httpd's module
     directory): the install path of source installs, outside Debian.
  3. The integration suite runs against that httpd and the installed
     module, once per MPM (prefork, worker, event).

It prints the matrix (version x MPM: passed, failed, skipped) and exits
non-zero if any cell has a failure or ran nothing.

  python3 -m tests.compat.run [--versions 2.4.52,2.4.58] [--mpms event]
                              [--tests tests/integration/test_http10.py ...]
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = REPO_ROOT.parent / "shared" / "httpd-src"
ALL_MPMS = ("prefork", "worker", "event")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mod_keepalive" / "compat"

# Debian builds these into apache2; the harness's configurations rely on it.
STATIC_MODULES = "unixd log_config logio version watchdog"
# What a finished build must have: the server, apxs, the MPMs, and the
# modules the integration tests load.
REQUIRED_FILES = ["bin/httpd", "bin/apxs", "include/ap_mmn.h"] + [
    "modules/mod_%s.so" % m for m in (
        "mpm_prefork", "mpm_worker", "mpm_event", "http2", "lua", "proxy",
        "proxy_http", "status", "cgid", "ratelimit", "ext_filter", "headers")]
COMPLETE_MARK = ".build-complete"
# Builds and test runs are bounded: a hung step fails the run.
BUILD_STEP_TIMEOUT = 1800
TEST_RUN_TIMEOUT = 1800


def log(message):
    print("compat: %s" % message, flush=True)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def published_checksums():
    sums = {}
    for line in (SOURCES / "SHA256SUMS").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0]
    return sums


def tarballs(wanted):
    found = sorted(SOURCES.glob("httpd-2.4.*.tar.xz"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)])
    if not found:
        sys.exit("compat: no httpd-2.4.*.tar.xz in %s" % SOURCES)
    by_version = {p.name[len("httpd-"):-len(".tar.xz")]: p for p in found}
    if wanted:
        missing = [v for v in wanted if v not in by_version]
        if missing:
            sys.exit("compat: no tarball for %s in %s" % (", ".join(missing), SOURCES))
        return [(v, by_version[v]) for v in wanted]
    return list(by_version.items())


def pcre_flag(version):
    # 2.4.52 knows only PCRE1; PCRE2 from 2.4.53 on.
    minor = int(version.split(".")[2])
    return "--with-pcre=/usr/bin/%s" % ("pcre-config" if minor < 53 else "pcre2-config")


def run(cmd, log_path, cwd=None, env=None, timeout=BUILD_STEP_TIMEOUT):
    with open(log_path, "a") as out:
        out.write("\n$ %s\n" % " ".join(str(c) for c in cmd))
        out.flush()
        proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    if proc.returncode != 0:
        tail = Path(log_path).read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError("%s failed (exit %d); end of %s:\n%s"
                           % (cmd[0], proc.returncode, log_path, "\n".join(tail)))


def build_is_usable(prefix):
    """A finished build whose server still starts far enough to say its version."""
    if not (prefix.parent / COMPLETE_MARK).is_file():
        return False
    if any(not (prefix / f).is_file() for f in REQUIRED_FILES):
        return False
    try:
        proc = subprocess.run([str(prefix / "bin/httpd"), "-v"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "Apache/2.4." in proc.stdout


def build_httpd(version, tarball, cache):
    """The prefix of httpd `version`, built from `tarball` unless cached."""
    checksum = sha256_of(tarball)
    expected = published_checksums().get(tarball.name)
    if expected and expected != checksum:
        raise RuntimeError("%s does not match SHA256SUMS" % tarball)
    home = cache / ("httpd-%s-%s" % (version, checksum[:16]))
    prefix = home / "prefix"
    if build_is_usable(prefix):
        log("httpd %s: cached build in %s" % (version, home))
        return prefix
    log("httpd %s: building into %s (a few minutes)" % (version, home))
    started = time.monotonic()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    build_log = home / "build.log"
    run(["tar", "-xJf", tarball, "-C", home], build_log)
    source = home / ("httpd-%s" % version)
    run(["./buildconf", "--with-apr=/usr/share/apr-1.0", "--with-apr-util=/usr/share/apr-1.0"],
        build_log, cwd=source)
    # buildconf leaves old helper scripts that do not know this machine.
    for helper in ("config.guess", "config.sub"):
        shutil.copy("/usr/share/misc/%s" % helper, source / "build" / helper)
    run(["./configure", "--prefix=%s" % prefix,
         "--with-apr=/usr/bin/apr-1-config", "--with-apr-util=/usr/bin/apu-1-config",
         pcre_flag(version), "--enable-mpms-shared=all", "--enable-mods-shared=reallyall",
         "--enable-mods-static=%s" % STATIC_MODULES, "--enable-http2", "--enable-lua"],
        build_log, cwd=source)
    run(["make", "-j%d" % (os.cpu_count() or 2)], build_log, cwd=source)
    run(["make", "install"], build_log, cwd=source)
    shutil.rmtree(source)  # the prefix is all later runs need
    (home / COMPLETE_MARK).write_text(checksum + "\n")
    if not build_is_usable(prefix):
        raise RuntimeError("httpd %s built but is not usable: see %s" % (version, build_log))
    log("httpd %s: built in %.0f s" % (version, time.monotonic() - started))
    return prefix


def build_and_install_module(version, prefix, cache):
    """mod_keepalive built with this httpd's apxs and installed by make install."""
    build_dir = cache / ("module-%s" % version)
    shutil.rmtree(build_dir, ignore_errors=True)
    log_path = cache / ("module-%s.log" % version)
    log_path.unlink(missing_ok=True)
    apxs = prefix / "bin" / "apxs"
    make = ["make", "--no-print-directory", "-C", REPO_ROOT, "BUILD=%s" % build_dir, "APXS=%s" % apxs]
    run(make + ["all"], log_path)
    installed = prefix / "modules" / "mod_keepalive.so"
    installed.unlink(missing_ok=True)
    run(make + ["install"], log_path)
    if not installed.is_file():
        raise RuntimeError("make install did not put mod_keepalive.so into %s" % installed.parent)
    log("httpd %s: module built with %s and installed as %s" % (version, apxs, installed))
    return installed


def run_suite(version, prefix, module, mpm, tests, cache):
    """(passed, failed, skipped) of the integration tests under one MPM."""
    report = cache / ("results-%s-%s.xml" % (version, mpm))
    report.unlink(missing_ok=True)
    env = dict(os.environ, APACHE_BIN=str(prefix / "bin" / "httpd"),
               APACHE_MODULES=str(prefix / "modules"), APXS=str(prefix / "bin" / "apxs"),
               KEEPALIVE_MODULE=str(module), MPMS=mpm)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
           "--junitxml=%s" % report] + list(tests)
    log("httpd %s, %s: %s" % (version, mpm, " ".join(cmd[1:])))
    try:
        subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, timeout=TEST_RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        log("httpd %s, %s: the test run took over %d s and was stopped" % (version, mpm, TEST_RUN_TIMEOUT))
    if not report.is_file():
        return (0, 1, 0)
    suites = ET.parse(report).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return (total - failed - skipped, failed, skipped)


def main():
    p = argparse.ArgumentParser(prog="python3 -m tests.compat.run", description=__doc__.split("\n")[0])
    p.add_argument("--versions", default="", help="comma-separated, e.g. 2.4.52 (default: every tarball)")
    p.add_argument("--mpms", default=",".join(ALL_MPMS))
    p.add_argument("--cache", default=os.environ.get("KEEPALIVE_COMPAT_CACHE", str(DEFAULT_CACHE)))
    p.add_argument("tests", nargs="*", default=["tests/integration"],
                   help="pytest paths (default: the whole integration suite)")
    args = p.parse_args()
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    mpms = [m for m in args.mpms.split(",") if m]
    versions = [v for v in args.versions.split(",") if v]

    matrix = []
    for version, tarball in tarballs(versions):
        started = time.monotonic()
        try:
            prefix = build_httpd(version, tarball, cache)
            module = build_and_install_module(version, prefix, cache)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            log("httpd %s: %s" % (version, e))
            matrix += [(version, mpm, None) for mpm in mpms]
            continue
        for mpm in mpms:
            matrix.append((version, mpm, run_suite(version, prefix, module, mpm, args.tests, cache)))
        log("httpd %s: done in %.0f s" % (version, time.monotonic() - started))

    print("\n| httpd | MPM | passed | failed | skipped |\n| --- | --- | --- | --- | --- |")
    ok = True
    for version, mpm, result in matrix:
        if result is None:
            print("| %s | %s | not built | | |" % (version, mpm))
            ok = False
            continue
        passed, failed, skipped = result
        print("| %s | %s | %d | %d | %d |" % (version, mpm, passed, failed, skipped))
        ok = ok and failed == 0 and passed > 0
    print("\ncompat: %s" % ("every cell passed" if ok else "FAILED: see the cells above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
