"""The keepalive note (%{keepalive}n) is made only where the configuration
reads it, so that servers whose log formats do not name it do not pay for
it (bench/cost.py --note-read measures the difference); wherever a format
names it, in any case and with %< or %>, the access log shows it as
before. The start-up log says at debug level which it found."""

import re
import time

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

READS = "mod_keepalive: the configuration reads the keepalive note"
NEVER = "mod_keepalive: the configuration never reads the keepalive note"

CASES = {
    "none": ("", NEVER),
    "access-log": ('LogFormat "%r|%>{KeepAlive}n" kanote\nCustomLog "@DIR@/logs/note.log" kanote\n', READS),
    "inline": ('CustomLog "@DIR@/logs/note.log" "%r|%{keepalive}n"\n', READS),
    "vhost": ('<VirtualHost 127.0.0.1:@PORT@>\n    ServerName other.test\n'
              '    CustomLog "@DIR@/logs/note.log" "%r|%<{keepalive}n"\n</VirtualHost>\n', READS),
    "expression": ('<If "-n note(\'keepalive\')">\n    Header set X-Never 1\n</If>\n', READS),
}


def start(mpm, module_path, config):
    return HttpdServer(mpm, module_path, extra_config="LogLevel notice keepalive:debug\n" + config,
                       name="lognote")


@pytest.mark.parametrize("case", sorted(CASES))
def test_start_up_says_whether_the_note_is_read(mpm, module_path, case):
    config, expected = CASES[case]
    for server in serve(start(mpm, module_path, config)):
        log = server.error_log()
        assert expected in log, "%s: expected %r in:\n%s" % (case, expected, log[-3000:])


@pytest.mark.parametrize("case", ["access-log", "inline"])
def test_a_format_that_names_the_note_logs_it(mpm, module_path, case):
    config, _ = CASES[case]
    for server in serve(start(mpm, module_path, config)):
        with RawConnection("127.0.0.1", server.port) as c:
            c.request(build_request(path="/"))
            c.request(build_request(path="/", headers=[("Connection", "close")]))
        note_log = server.dir / "logs" / "note.log"
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline:
            lines = note_log.read_text().splitlines() if note_log.exists() else []
            if len(lines) >= 2:
                break
            time.sleep(0.05)
        assert len(lines) == 2, lines
        assert re.fullmatch(r"GET / HTTP/1\.1\|keep timeout=5 max=100", lines[0]), lines
        assert re.fullmatch(r"GET / HTTP/1\.1\|close client-close", lines[1]), lines
