"""The decision and its reason, written for each request: the
%{keepalive}n access log note and the keepalive:trace1 error log lines."""

import re
import time

from tests.harness.metrics import CLOSE, KA, WAIT, closes, request
from tests.harness.rawhttp import build_request


# -- the %{keepalive}n access log note ------------------------------------
def test_access_log_note_says_the_decision_and_its_reason(server, scraper):
    port, host = server.port, "log.test"
    closes(port, host, "/?id=a1", "/?id=a2", ("/?id=a3", "HTTP/1.1", CLOSE))
    closes(port, host, ("/?id=b1", "HTTP/1.0", ()))
    closes(port, host, ("/?id=c1", "HTTP/1.0", KA), ("/?id=c2", "HTTP/1.0",
                                                     ()))
    closes(port, host, "/cond/?id=d1")
    c, (missing,) = request(port, host, "/nothing-here?id=e1")
    with c:
        assert missing.status == 404 and missing.body == b"hello\n", (
            "test precondition: ErrorDocument 404 /small.txt\n"
            + missing.describe())
        last = c.request(build_request(path="/?id=e2", host=host,
                                       headers=CLOSE))
        assert "close" in last.tokens("Connection"), last.describe()
    want = {
        "a1": "keep timeout=5 max=100",
        "a2": "keep timeout=5 max=99",
        "a3": "close client-close",
        "b1": "close http10-no-optin",
        "c1": "keep timeout=5 max=100",
        "c2": "close http10-no-optin",
        "d1": "close disabled-by-condition",
        "e1": "keep timeout=5 max=100",     # ErrorDocument: both requests
        "e2": "close client-close",
    }
    log = server.dir / "logs" / "note.log"
    deadline = time.monotonic() + WAIT
    while True:
        text = log.read_text() if log.exists() else ""
        got = {}
        for line in text.splitlines():
            vhost, req, first, final = line.split("|")
            m = re.search(r"\?id=(\w+) ", req)
            if vhost == host and m:
                got[m.group(1)] = (first, final)
        if set(got) >= set(want) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    wrong = {i: got.get(i) for i, note in want.items()
             if got.get(i) != (note, note)}
    assert not wrong, ("access log notes (original request, final request) "
                       "differ: %r\nwanted %r\n--- %s ---\n%s"
                       % (wrong, want, log, text))


# -- trace1 lines ---------------------------------------------------------
TRACE_RE = re.compile(r"^\[[^\]]+\] \[keepalive:trace1\] \[pid \d+[^\]]*\] "
                      r"[^ ]+ \[client 127\.0\.0\.1:(\d+)\] (.*)$")


def test_trace_log_explains_each_decision(server, scraper):
    port, host = server.port, "trace.test"
    traffic = [
        (["/", "/", ("/", "HTTP/1.1", CLOSE)],
         ["keep timeout=5 max=100 (idle 5000 ms)",
          "keep timeout=5 max=99 (idle 5000 ms)",
          "close client-close"]),
        ([("/", "HTTP/1.0", ())], ["close http10-no-optin"]),
        (["/budget/", "/budget/", "/budget/"],
         ["keep timeout=5 max=2 (idle 5000 ms)",
          "keep timeout=5 max=1 (idle 5000 ms)",
          "close budget-reached"]),
        (["/cond/"], ["close disabled-by-condition"]),
    ]
    want = {}
    for steps, lines in traffic:
        c, _ = request(port, host, *steps)
        with c:
            want[c.sock.getsockname()[1]] = lines
            assert c.is_closed(WAIT)
    deadline = time.monotonic() + WAIT
    while True:
        got = {}
        for line in server.error_log().splitlines():
            m = TRACE_RE.match(line)
            if m and int(m.group(1)) in want:
                got.setdefault(int(m.group(1)), []).append(m.group(2))
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == want, ("keepalive:trace1 lines per client port differ:\n"
                         "got  %r\nwant %r\n--- error log ---\n%s"
                         % (got, want, server.error_log()[-5000:]))
