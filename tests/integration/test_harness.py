"""Self-checks of the harness: it notices crashed children and module
errors, and stopping a server leaves no process behind."""

import os
import signal
import time

from tests.harness.httpd import HttpdServer, pgid_members
from tests.harness.rawhttp import RawConnection, build_request

SAMPLE_LOG = """\
[Mon Nov 23 18:44:00.000001 2026] [mpm_event:notice] [pid 10:tid 10] AH00489: Apache/2.4.71 (Debian) configured -- resuming normal operations
[Mon Nov 23 18:44:00.000002 2026] [keepalive:error] [pid 11:tid 12] [client 127.0.0.1:4000] mod_keepalive: policy decided keep (x) but core closed the connection
[Mon Nov 23 18:44:00.000003 2026] [keepalive:trace1] [pid 11:tid 12] keep timeout=5 max=99 (idle 5000 ms)
[Mon Nov 23 18:44:00.000004 2026] [core:notice] [pid 10:tid 10] AH00052: child pid 11 exit signal Segmentation fault (11)
[Mon Nov 23 18:44:00.000005 2026] [core:error] [pid 11:tid 12] [client 127.0.0.1:4001] AH00135: Invalid method in request FOO / HTTP/1.1
[Mon Nov 23 18:44:00.000006 2026] [keepalive:crit] [pid 11:tid 12] something critical
[Mon Nov 23 18:44:00.000007 2026] [core:emerg] [pid 11:tid 12] mod_keepalive.cpp: cannot go on
"""


def test_log_check_flags_module_errors_and_crashes_only():
    bad = HttpdServer.log_problems(SAMPLE_LOG)
    assert [l.split("] ", 2)[1] for l in bad] == [
        "[keepalive:error", "[core:notice", "[keepalive:crit", "[core:emerg"]


def test_crashed_child_is_detected_and_stop_leaves_nothing(mpm):
    server = HttpdServer(mpm, module_path=None, name="selfcheck").start()
    try:
        with RawConnection("127.0.0.1", server.port) as c:
            assert c.request(build_request()).status == 200
        children = [p for p in pgid_members(server.pgid)
                    if p != server.proc.pid]
        assert children, "no httpd children found"
        os.kill(children[0], signal.SIGSEGV)
        deadline = time.monotonic() + 10
        problems = []
        while not problems and time.monotonic() < deadline:
            time.sleep(0.1)
            problems = server.new_log_problems()
        assert any("exit signal Segmentation fault" in l for l in problems), (
            server.error_log())
    finally:
        server.stop(check=False)
    assert not pgid_members(server.pgid)
    assert server.proc.returncode is not None
    server.cleanup()
