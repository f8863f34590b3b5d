"""Servers under pytest: which MPMs and which module build a run tests, and
serve(), the generator every server fixture delegates to (start, yield,
stop, fail the test on a crashed child or a module error)."""

import os
from pathlib import Path

import pytest

from tests.harness.httpd import DEFAULT_MODULE, HttpdServer, HttpdStartError

ALL_MPMS = ("prefork", "worker", "event")

_running = []


# -- configuration -----------------------------------------------------------
def selected_mpms():
    raw = os.environ.get("MPMS", "")
    if not raw.strip():
        return list(ALL_MPMS)
    mpms = [m.strip() for m in raw.split(",") if m.strip()]
    bad = [m for m in mpms if m not in ALL_MPMS]
    if bad:
        raise pytest.UsageError("MPMS: unknown MPM(s) %s (known: %s)"
                                % (", ".join(bad), ", ".join(ALL_MPMS)))
    return mpms


def module_path_setting():
    """The module to test, or None when KEEPALIVE_MODULE=none."""
    raw = os.environ.get("KEEPALIVE_MODULE")
    if raw is None:
        return DEFAULT_MODULE
    if raw.strip().lower() in ("", "none"):
        return None
    return Path(raw).resolve()


# -- server lifecycle --------------------------------------------------------
def serve(server):
    """Generator for server fixtures: start, yield, stop and check.

    Stopping fails the test if any httpd process is left over; afterwards
    the test fails if a child crashed or mod_keepalive logged at level
    error or worse.  The server directory is kept when something failed.
    """
    try:
        server.start()
    except HttpdStartError as e:
        pytest.fail("%s\n(server directory kept: %s)" % (e, server.dir),
                    pytrace=False)
    _running.append(server)
    try:
        yield server
    finally:
        _running.remove(server)
        problems = server.stop()        # raises if processes are left over
        if not problems:
            server.cleanup()
    if problems:
        pytest.fail("%r error log shows problems (directory kept):\n%s"
                    % (server, "\n".join(problems)), pytrace=False)


def new_problems_of_running_servers():
    out = []
    for server in list(_running):
        out.extend("%r: %s" % (server, line)
                   for line in server.new_log_problems())
    return out


def configtest_mpm():
    """The one MPM the configtest-only tests run under: event if selected."""
    mpms = selected_mpms()
    return "event" if "event" in mpms else mpms[0]


def run_configtest(module_path, config, keepalive=("On", "5", "100"),
                   extra_modules=(), defines=()):
    """``apache2 -t`` on a generated configuration (see HttpdServer for the
    arguments; ``defines``: -D names). Returns the exit status, the output,
    the output with the server directory's name taken out, and the
    configuration's text."""
    server = HttpdServer(configtest_mpm(), module_path, keepalive=keepalive,
                         extra_config=config, extra_modules=extra_modules,
                         name="configtest")
    try:
        proc = server.configtest(*defines)
        conf_path = str(server.conf_path)
        output = proc.stdout + proc.stderr
        config_text = server.conf_path.read_text()
    finally:
        server.cleanup()
    # The server directory's random name could contain the value we look
    # for: take it out of the output before searching.
    scrubbed = output.replace(conf_path, "<httpd.conf>").replace(
        str(server.dir), "<dir>")
    return proc.returncode, output, scrubbed, config_text


def describe_configtest(rc, output, config):
    tail = "\n".join(config.splitlines()[-25:])
    return ("apache2 -t exit status %s\noutput:\n%s\nend of the generated "
            "config:\n%s" % (rc, output.strip(), tail))
