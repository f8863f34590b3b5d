"""Servers under pytest: which MPMs and which module build a run tests, and
serve(), the generator every server fixture delegates to (start, yield,
stop, fail the test on a crashed child or a module error)."""

import os
from pathlib import Path

import pytest

from tests.harness.httpd import DEFAULT_MODULE, HttpdStartError

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
