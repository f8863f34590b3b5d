"""Proxying, tunnels and protocol upgrades.

- A forward proxy (ProxyRequests On) never keeps an HTTP/1.0 client's
  connection (RFC 9112 section 9.3), whatever it asked for; HTTP/1.1 clients
  of the same proxy stay persistent with the honest header.
- Keep-Alive headers from proxied backends never reach the client.
- The "200 Connection Established" to CONNECT and the "101 Switching
  Protocols" of an h2c upgrade carry no Keep-Alive: the connection is no
  longer HTTP/1.x after them.

The backends are another <VirtualHost> of the same httpd on a second port
(with forged Keep-Alive / Connection headers from mod_headers, which the
module on that vhost may already strip) and a raw socket server in this
process, whose forged headers certainly reach mod_proxy_http.
"""

import re
import socket
import threading
import time

import pytest

from tests.harness.assertions import (assert_closed_soon,
                                      assert_closing_without_keepalive,
                                      assert_keepalive, assert_still_open)
from tests.harness.configs import FORGED_VALUE
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

KA = [("Connection", "keep-alive")]
H2_ADVISORY = re.compile(r"AH10034: .*not supported by mod_http2")

FORGED_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 6\r\n"
                   b"Keep-Alive: timeout=999, max=999\r\n"
                   b"Connection: keep-alive\r\n\r\nhello\n")


class ForgingBackend:
    """A minimal HTTP/1.1 origin server on 127.0.0.1 that answers every
    request with FORGED_RESPONSE and keeps its connections open."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.requests = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(0.5)
        buf = b""
        with conn:
            while not self.stopping.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:       # GET/HEAD only: no bodies
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.requests += 1
                    if head.startswith(b"HEAD "):
                        conn.sendall(FORGED_RESPONSE.split(b"\r\n\r\n")[0]
                                     + b"\r\n\r\n")
                    else:
                        conn.sendall(FORGED_RESPONSE)

    def close(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(timeout=2)


CONFIG = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName proxy.test
    ProxyRequests On
    # no pooled backend connections left open when the server stops
    SetEnv proxy-nokeepalive 1
    <Proxy "*">
        Require all granted
    </Proxy>
    AllowCONNECT @PORT1@
    ProxyPass /rp-vhost/ http://127.0.0.1:@PORT1@/
    ProxyPass /rp-raw/ http://127.0.0.1:%(raw)d/
    ProxyPass /rp-dead/ http://127.0.0.1:%(dead)d/
    <Location /rp-raw-hdr/>
        ProxyPass http://127.0.0.1:%(raw)d/
        Header always set Keep-Alive "%(forged)s"
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName h2c.test
    Protocols h2c http/1.1
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT1@>
    ServerName backend.test
    Header always set Keep-Alive "%(forged)s"
    Header always set Connection "keep-alive"
</VirtualHost>
"""


def unused_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]      # nobody listens there afterwards


@pytest.fixture(scope="module")
def raw_backend():
    backend = ForgingBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def server(mpm, module_path, raw_backend):
    config = CONFIG % {"raw": raw_backend.port, "dead": unused_port(),
                       "forged": FORGED_VALUE}
    yield from serve(HttpdServer(
        mpm, module_path, keepalive=("On", "5", "100"), extra_config=config,
        extra_modules=["proxy", "proxy_http", "proxy_connect", "http2",
                       "env"],
        extra_ports=1, name="proxy"))


def backend_url(server, path="/small.txt"):
    return "http://127.0.0.1:%d%s" % (server.extra_ports[0], path)


def backend_host(server):
    return "127.0.0.1:%d" % server.extra_ports[0]


# -- forward proxy -----------------------------------------------------------
@pytest.mark.parametrize("headers", [
    KA, KA + [("Proxy-Connection", "keep-alive")],
    [("Connection", "Keep-Alive, TE"), ("TE", "trailers")]],
    ids=["connection-keep-alive", "with-proxy-connection", "mixed-case-list"])
def test_forward_proxy_never_keeps_http10_client(server, headers):
    req = build_request(path=backend_url(server), version="HTTP/1.0",
                        host=backend_host(server), headers=headers)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200 and resp.body == b"hello\n", (
            "test precondition: the proxy should fetch the backend's "
            "/small.txt\n" + resp.describe(req))
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_forward_proxy_http10_head_request_closes(server):
    req = build_request(method="HEAD", path=backend_url(server),
                        version="HTTP/1.0", host=backend_host(server),
                        headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_forward_proxy_keeps_http11_client_with_honest_header(server):
    with RawConnection("127.0.0.1", server.port) as c:
        for i, headers in enumerate([[], KA, []]):
            req = build_request(path=backend_url(server),
                                host=backend_host(server), headers=headers)
            resp = c.request(req)
            assert resp.status == 200 and resp.body == b"hello\n", (
                resp.describe(req))
            assert_keepalive(resp, 5, 100 - i, req)
            assert FORGED_VALUE not in resp.head_text(), resp.describe(req)
        assert_still_open(c, req, resp)


def test_same_proxy_keeps_http10_client_for_its_own_pages(server):
    # the rule is about proxied requests, not about the proxy's vhost
    req = build_request(path="/small.txt", version="HTTP/1.0", headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (100, 99):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)


# -- reverse proxy: the backend's Keep-Alive never reaches the client ---------
def test_raw_backend_really_forges_the_headers(raw_backend):
    # precondition of the tests below
    with RawConnection("127.0.0.1", raw_backend.port) as c:
        resp = c.request(build_request())
        assert resp.get("Keep-Alive") == FORGED_VALUE, resp.describe()
        assert resp.tokens("Connection") == ["keep-alive"], resp.describe()


@pytest.mark.parametrize("prefix", ["/rp-raw/", "/rp-vhost/", "/rp-raw-hdr/"],
                         ids=["raw-backend", "backend-vhost",
                              "raw-backend-and-mod-headers"])
@pytest.mark.parametrize("headers", [[], KA], ids=["no-token", "keep-alive"])
def test_proxied_keepalive_replaced_by_true_values(server, prefix, headers):
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (100, 99, 98):
            req = build_request(path=prefix + "small.txt", headers=headers)
            resp = c.request(req)
            assert resp.status == 200 and resp.body == b"hello\n", (
                resp.describe(req))
            assert_keepalive(resp, 5, left, req)
            assert "999" not in resp.head_text(), resp.describe(req)
        assert_still_open(c, req, resp)


@pytest.mark.parametrize("prefix", ["/rp-raw/", "/rp-vhost/", "/rp-raw-hdr/"],
                         ids=["raw-backend", "backend-vhost",
                              "raw-backend-and-mod-headers"])
@pytest.mark.parametrize("version,headers", [
    ("HTTP/1.0", []), ("HTTP/1.1", [("Connection", "close")])],
    ids=["http10-no-optin", "http11-close"])
def test_proxied_keepalive_removed_from_closing_response(server, prefix,
                                                         version, headers):
    req = build_request(path=prefix + "small.txt", version=version,
                        headers=headers)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


def test_proxied_http10_keepalive_client_gets_true_values(server):
    req = build_request(path="/rp-raw/small.txt", version="HTTP/1.0",
                        headers=KA)
    with RawConnection("127.0.0.1", server.port) as c:
        for left in (100, 99):
            resp = c.request(req)
            assert resp.status == 200, resp.describe(req)
            assert_keepalive(resp, 5, left, req)


def test_unreachable_backend_503_closes(server):
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request())
        assert_keepalive(first, 5, 100)
        req = build_request(path="/rp-dead/x", headers=KA)
        resp = c.request(req)
        assert resp.status == 503, resp.describe(req)
        assert_closing_without_keepalive(resp, req)
        assert_closed_soon(c, req, resp)


# -- CONNECT tunnel ----------------------------------------------------------
@pytest.mark.parametrize("headers", [[], KA], ids=["no-token", "keep-alive"])
def test_connect_tunnel_response_has_no_keepalive_and_tunnel_works(server,
                                                                   headers):
    target = backend_host(server)
    req = build_request(method="CONNECT", path=target, host=target,
                        headers=headers)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req, head_only=True)     # a 2xx to CONNECT: no body
        assert 200 <= resp.status < 300, resp.describe(req)
        assert not resp.has("Keep-Alive"), (
            "the response opening a tunnel must not carry Keep-Alive\n"
            + resp.describe(req))
        assert "keep-alive" not in resp.tokens("Connection"), (
            resp.describe(req))
        # now bytes go to the backend vhost, which answers for itself
        inner = build_request(path="/small.txt", host="backend.test")
        tunneled = c.request(inner)
        assert tunneled.status == 200 and tunneled.body == b"hello\n", (
            "the tunnel should reach the backend\n" + tunneled.describe(inner))


def test_connect_to_port_not_allowed_is_refused_without_keepalive_lie(server):
    target = "127.0.0.1:%d" % server.port        # not in AllowCONNECT
    req = build_request(method="CONNECT", path=target, host=target)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
        assert resp.status == 403, resp.describe(req)
        values = resp.get_all("Keep-Alive")
        if "close" in resp.tokens("Connection"):
            assert not values, resp.describe(req)
        else:
            assert_keepalive(resp, 5, 100, req)


# -- h2c upgrade -------------------------------------------------------------
H2C_UPGRADE = (b"GET /small.txt HTTP/1.1\r\nHost: h2c.test\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def h2_inactive(server):
    return server.mpm == "prefork" and any(
        H2_ADVISORY.search(l) for l in server.error_log().splitlines())


def test_h2c_upgrade_101_has_no_keepalive(server):
    with RawConnection("127.0.0.1", server.port) as c:
        first = c.request(build_request(host="h2c.test"))
        assert_keepalive(first, 5, 100)
        if h2_inactive(server):
            # mod_http2 does not run under prefork (it said so in the log):
            # the upgrade is ignored and the answer is a plain HTTP/1.1 one,
            # which must be honest like any other.
            resp = c.request(H2C_UPGRADE)
            assert resp.status == 200, resp.describe(H2C_UPGRADE)
            assert_keepalive(resp, 5, 99, H2C_UPGRADE)
            return
        resp = c.request(H2C_UPGRADE, head_only=True)
        assert resp.status == 101, (
            "expected 101 Switching Protocols\n" + resp.describe(H2C_UPGRADE))
        assert not resp.has("Keep-Alive"), (
            "a 101 must not carry Keep-Alive\n" + resp.describe(H2C_UPGRADE))
        assert "keep-alive" not in resp.tokens("Connection"), (
            resp.describe(H2C_UPGRADE))
        # and the connection now speaks HTTP/2: the server's first frame is
        # a SETTINGS frame (type 4)
        c.send(H2_PREFACE)
        deadline = time.monotonic() + 3
        while len(c.buf) < 9 and c._recv_some(deadline):
            pass
        assert len(c.buf) >= 9 and c.buf[3] == 4, (
            "expected an HTTP/2 SETTINGS frame after the 101, got %r"
            % c.buf[:50])
