"""Many requests on ONE keep-alive connection, pipelined in batches, every
response counted and checked; and which httpd process serves it, and how
much memory that process holds (tests/integration/test_memory.py and
bench/memory.py)."""

import os
import socket
import time

# GET /small.txt: a static file of 6 bytes ("hello\n"). Every response then
# ends with the head's empty line and that body, so responses are counted
# exactly without parsing them.
REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
END_OF_RESPONSE = b"\r\n\r\nhello\n"
STATUS_200 = b"HTTP/1.1 200 OK\r\n"
ANY_STATUS = b"HTTP/1."                  # in a response, only its status line


class PipelineError(AssertionError):
    """A batch's responses were not what the pipeline expects, the server
    closed the connection, or the time limit was reached."""


class Pipeline:
    """One connection; batches of pipelined requests, responses counted.

    Every response of a batch must be "200 OK", must not say "close" nor
    carry "max=" (the servers have no request limit), and must carry
    ``keepalive_line`` (bytes, e.g. b"Keep-Alive: timeout=5\\r\\n"), or no
    Keep-Alive header at all if it is None."""

    def __init__(self, port, keepalive_line, deadline, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.keepalive_line = keepalive_line
        self.deadline = deadline            # time.monotonic() value
        self.done = 0

    def client_port(self):
        return self.sock.getsockname()[1]

    def batch(self, n):
        self.sock.sendall(REQUEST * n)
        chunks, count, tail = [], 0, b""
        keep = len(END_OF_RESPONSE) - 1
        while count < n:
            if time.monotonic() > self.deadline:
                raise PipelineError("time limit reached after %d responses"
                                    % (self.done + count))
            data = self.sock.recv(1 << 20)
            if not data:
                raise PipelineError(
                    "the server closed the connection after %d responses; "
                    "last bytes: %r" % (self.done + count,
                                        b"".join(chunks)[-600:]))
            chunks.append(data)
            # responses ending in this chunk (an end marker can straddle
            # two chunks, never lie wholly in the kept tail)
            count += (tail + data).count(END_OF_RESPONSE)
            tail = data[-keep:]
        buf = b"".join(chunks)
        self.check(buf, n)
        self.done += n

    def check(self, buf, n):
        problems = []
        if buf.count(END_OF_RESPONSE) != n or not buf.endswith(END_OF_RESPONSE):
            problems.append("%d responses where %d were sent"
                            % (buf.count(END_OF_RESPONSE), n))
        if buf.count(STATUS_200) != n or buf.count(ANY_STATUS) != n:
            problems.append("%d '200 OK' among %d status lines"
                            % (buf.count(STATUS_200), buf.count(ANY_STATUS)))
        lower = buf.lower()
        if b"close" in lower:
            problems.append("a response says close")
        if b"max=" in lower:
            problems.append("a Keep-Alive header carries max=")
        if self.keepalive_line is None:
            if b"keep-alive:" in lower:
                problems.append("a response carries a Keep-Alive header")
        elif buf.count(self.keepalive_line) != n:
            problems.append("%d of %d responses carry %r"
                            % (buf.count(self.keepalive_line), n,
                               self.keepalive_line))
        if problems:
            first = buf[:buf.find(END_OF_RESPONSE) + len(END_OF_RESPONSE)]
            raise PipelineError(
                "batch after %d requests: %s; first response of the batch:\n%s"
                % (self.done, "; ".join(problems), first.decode("latin-1")))

    def close(self):
        self.sock.close()


def _socket_inode(local_port, remote_port):
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            lport = int(fields[1].split(":")[1], 16)
            rport = int(fields[2].split(":")[1], 16)
            if lport == local_port and rport == remote_port:
                return fields[9]
    return None


def serving_child(server, client_port):
    """PID of the httpd child holding the server end of our connection
    from ``client_port`` (read from /proc: no ss needed)."""
    inode = _socket_inode(server.port, client_port)
    if not inode:
        raise PipelineError("server side of the connection from port %d not "
                            "found in /proc/net/tcp" % client_port)
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
    raise PipelineError("no httpd child holds socket inode %s" % inode)


def memory_kib(pid):
    """VmRSS and RssAnon of ``pid``, in KiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    if "VmRSS" not in out:
        raise PipelineError("no VmRSS for pid %d" % pid)
    return out
