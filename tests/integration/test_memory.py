"""Per-request data comes from the request pool only: one keep-alive
connection carrying 100,000 requests does not make the process serving it
grow.  Requests are pipelined in batches of 500 on ONE connection (no
request limit); the resident size (VmRSS) of the child holding that
connection is taken after a 10,000-request warm-up and at the end.

Two servers: core's MaxKeepAliveRequests 0 alone, and every mod_keepalive
directive in use (server level and in a <Location> the requests hit), so
that their per-request code paths run 100,000 times too.
"""

import os
import socket
import time

import pytest

from harness import serve
from httpd import HttpdServer

TOTAL = 100_000
WARMUP = 10_000
BATCH = 500
MAX_GROWTH_KIB = 512
TIME_LIMIT = 120.0          # seconds for the whole run on one connection

REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
END_OF_RESPONSE = b"\r\n\r\nhello\n"      # end of head + the 6-byte body
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"

DIRECTIVES = """\
KeepAliveMaxRequests 0
KeepAliveHeader Always
KeepAliveIdleTimeout 5
KeepAliveAdvertisedTimeout 4
KeepAliveMaxLifetime 1h
KeepAliveHTTP10 On
KeepAliveDisableIf "%{HTTP_USER_AGENT} =~ /BadBot/"
<Location /small.txt>
    KeepAliveHeader Always
    KeepAliveIdleTimeout 5
    KeepAliveAdvertisedTimeout 4
    KeepAliveMaxRequests 0
    KeepAliveMaxLifetime 2h
    KeepAliveDisableIf "-n %{ENV:no_such_variable}"
</Location>
"""


@pytest.fixture(scope="module")
def core_unlimited_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path, keepalive=("On", "5", "0"),
                                 name="mem-core"))


@pytest.fixture(scope="module")
def directives_server(mpm, module_path):
    # core's limit stays at 100: only KeepAliveMaxRequests 0 lifts it
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "100"),
                                 extra_config=DIRECTIVES, name="mem-directives"))


def socket_inode(local_port, remote_port):
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            lport = int(fields[1].split(":")[1], 16)
            rport = int(fields[2].split(":")[1], 16)
            if lport == local_port and rport == remote_port:
                return fields[9]
    return None


def serving_child(server, client_port):
    """PID of the httpd child holding the server end of our connection."""
    inode = socket_inode(server.port, client_port)
    assert inode, "server side of the connection not found in /proc/net/tcp"
    target = "socket:[%s]" % inode
    for pid in server.children():
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                    return pid
            except OSError:
                pass
    raise AssertionError("no httpd child holds socket inode %s" % inode)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class Pipeline:
    def __init__(self, port, keepalive_line, deadline):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.keepalive_line = keepalive_line
        self.deadline = deadline
        self.done = 0

    def batch(self):
        """Send BATCH pipelined requests, read and check BATCH responses."""
        self.sock.sendall(REQUEST * BATCH)
        buf = b""
        while buf.count(END_OF_RESPONSE) < BATCH:
            if time.monotonic() > self.deadline:
                raise AssertionError(
                    "took longer than %.0fs: %d responses done"
                    % (TIME_LIMIT, self.done + buf.count(END_OF_RESPONSE)))
            data = self.sock.recv(1 << 20)
            if not data:
                raise AssertionError(
                    "server closed the connection after %d responses; last "
                    "bytes: %r" % (self.done + buf.count(END_OF_RESPONSE),
                                   buf[-600:]))
            buf += data
        n_status = buf.count(STATUS_LINE)
        n_keepalive = buf.count(self.keepalive_line)
        if not (buf.endswith(END_OF_RESPONSE) and n_status == BATCH
                and n_keepalive == BATCH and b"close" not in buf.lower()):
            first = buf[:buf.index(END_OF_RESPONSE) + len(END_OF_RESPONSE)]
            raise AssertionError(
                "after %d requests: a batch of %d responses had %d '200 OK' "
                "and %d %r lines; first response of the batch:\n%s"
                % (self.done, BATCH, n_status, n_keepalive,
                   self.keepalive_line, first.decode("latin-1")))
        self.done += BATCH

    def close(self):
        self.sock.close()


def run_growth_check(server, keepalive_line):
    start = time.monotonic()
    p = Pipeline(server.port, keepalive_line, start + TIME_LIMIT)
    try:
        p.batch()
        pid = serving_child(server, p.sock.getsockname()[1])
        while p.done < WARMUP:
            p.batch()
        before = rss_kib(pid)
        while p.done < TOTAL:
            p.batch()
        after = rss_kib(pid)
        assert serving_child(server, p.sock.getsockname()[1]) == pid
    finally:
        p.close()
    growth = after - before
    summary = ("%s: child %d VmRSS %d KiB after %d requests, %d KiB after "
               "%d: growth %+d KiB (limit %d KiB), %.1fs"
               % (server.mpm, pid, before, WARMUP, after, TOTAL, growth,
                  MAX_GROWTH_KIB, time.monotonic() - start))
    print(summary)
    assert growth < MAX_GROWTH_KIB, (
        "the process serving one keep-alive connection grew by %d KiB over "
        "%d requests: per-request memory is not coming from the request "
        "pool\n%s" % (growth, TOTAL - WARMUP, summary))


def test_100k_requests_on_one_connection_do_not_grow_the_child(
        core_unlimited_server):
    run_growth_check(core_unlimited_server, b"Keep-Alive: timeout=5\r\n")


def test_100k_requests_with_every_directive_do_not_grow_the_child(
        directives_server):
    run_growth_check(directives_server, b"Keep-Alive: timeout=4\r\n")
