"""A request still being handled when the server is told to stop gracefully
("apache2 -k graceful-stop", i.e. SIGWINCH to the parent) is answered, but
its response says "Connection: close" without Keep-Alive: the connection
has no future.  Each test stops its own server."""

import time

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive)
from tests.harness.httpd import HttpdServer, sleeping_lua_handler
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]
SLOW_SECONDS = 1.0

SLOW_LUA = sleeping_lua_handler(SLOW_SECONDS)


@pytest.fixture
def server(mpm, module_path):
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"),
        extra_modules=["lua"], files={"scripts/slow.lua": SLOW_LUA},
        extra_config='LuaMapHandler "^/slow$" "@DIR@/scripts/slow.lua" '
                     'handle\n'
                     'LogFormat "%r|%{keepalive}n" kanote\n'
                     'CustomLog "@DIR@/logs/note.log" kanote\n',
        name="graceful"))


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_request_in_progress_at_graceful_stop_gets_close(server, version):
    req = build_request(path="/slow", version=version, headers=KA)
    with RawConnection("127.0.0.1", server.port,
                       timeout=SLOW_SECONDS + 8) as c:
        first = c.request(build_request(version=version, headers=KA))
        assert_keepalive(first, 5, 100)
        c.send(req)
        time.sleep(SLOW_SECONDS / 3)         # the handler is sleeping now
        # precondition: nothing of the response has arrived yet
        try:
            c._recv_some(time.monotonic() + 0.01)
        except OSError:                      # socket.timeout: nothing came
            pass
        assert not c.buf and not c.eof, (
            "test precondition: the slow handler answered before the "
            "signal: %r" % c.buf[:300])
        # Under prefork the signal also cuts the handler's sleep short; the
        # request is still in progress when it arrives.
        server.graceful_stop()
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"slow\n", (
            "the request in progress must still be answered\n"
            + resp.describe(req))
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)
    deadline = time.monotonic() + 10
    while server.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.running(), "httpd did not exit after graceful-stop"
    # The access log says why it closed.
    notes = (server.dir / "logs" / "note.log").read_text()
    assert "GET /slow %s|close server-stopping" % version in notes, notes
