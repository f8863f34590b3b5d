"""A tiny raw-socket HTTP/1.x client for the integration tests.

It sends exactly the bytes it is given and parses exactly what comes back, so
the tests can see every header line the server wrote (including duplicates),
reuse one TCP connection for several requests, and measure when the server
closes an idle connection.  Every blocking operation is bounded by a deadline.
"""

import re
import socket
import time

DEFAULT_TIMEOUT = 5.0
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class HttpClientError(Exception):
    """The server did not answer as an HTTP/1.x server should (or too late)."""


class ConnectionClosed(HttpClientError):
    """The server closed the connection before a complete response arrived."""


class Response:
    """One parsed HTTP/1.x response.

    ``header_lines`` keeps every header line exactly as received (without the
    CRLF); ``headers`` is the same list split into (name, value) pairs, in
    order, duplicates preserved.  Lookups by name are case-insensitive.
    """

    def __init__(self, status_line, header_lines, body=b"", raw_head=b""):
        self.status_line = status_line
        self.header_lines = list(header_lines)
        self.body = body
        self.raw_head = raw_head
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise HttpClientError("malformed status line: %r" % status_line)
        self.version = m.group(1)
        self.status = int(m.group(2))
        self.reason = m.group(3) or ""
        self.headers = []
        for line in self.header_lines:
            if ":" not in line:
                raise HttpClientError("malformed header line %r in:\n%s"
                                      % (line, self.head_text()))
            name, value = line.split(":", 1)
            self.headers.append((name, value.strip(" \t")))

    # -- lookups -----------------------------------------------------------
    def get_all(self, name):
        """All values of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [v for (n, v) in self.headers if n.lower() == name]

    def get(self, name, default=None):
        """The only value of header ``name``; ``default`` if absent.

        Raises if the header occurs more than once, because the tests care
        about duplicates; use get_all() to look at them.
        """
        values = self.get_all(name)
        if not values:
            return default
        if len(values) > 1:
            raise AssertionError("header %r occurs %d times in response:\n%s"
                                 % (name, len(values), self.describe()))
        return values[0]

    def has(self, name):
        return bool(self.get_all(name))

    def tokens(self, name):
        """Comma-separated tokens of all ``name`` headers, lower-cased."""
        out = []
        for value in self.get_all(name):
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
        return out

    # -- diagnostics -------------------------------------------------------
    def head_text(self):
        return "\n".join([self.status_line] + self.header_lines)

    def describe(self, request=None):
        """Human readable dump used in assertion messages."""
        parts = []
        if request is not None:
            parts.append("request bytes: %r" % (request,))
        parts.append("response head:\n    " + "\n    ".join(
            [self.status_line] + self.header_lines))
        if self.body:
            body = self.body[:200]
            parts.append("response body (%d bytes): %r%s"
                         % (len(self.body), body,
                            "..." if len(self.body) > 200 else ""))
        return "\n".join(parts)

    def __repr__(self):
        return "<Response %s %d %r>" % (self.version, self.status,
                                        self.header_lines)


def build_request(method="GET", path="/", version="HTTP/1.1", host="127.0.0.1",
                  headers=(), body=b""):
    """Request bytes; ``headers`` is a sequence of (name, value) or raw lines."""
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    for h in headers:
        if isinstance(h, str):
            lines.append(h)
        else:
            lines.append("%s: %s" % h)
    if body:
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + body


class RawConnection:
    """One TCP connection speaking HTTP/1.x, byte by byte.

    ``last_response_done`` is the monotonic time at which the last complete
    response had been read; wait_for_close() measures from there.
    """

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.last_response_done = None
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # context manager -------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # low level -------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _recv_some(self, deadline):
        """Receive more bytes into self.buf; returns False on EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker, deadline, limit):
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                return idx
            if len(self.buf) > limit:
                raise HttpClientError("no %r within %d bytes: %r"
                                      % (marker, limit, self.buf[:500]))
            if not self._recv_some(deadline):
                return -1

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._recv_some(deadline):
                raise ConnectionClosed(
                    "connection closed after %d of %d body bytes"
                    % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_line(self, deadline):
        idx = self._read_until(b"\r\n", deadline, MAX_HEAD_BYTES)
        if idx < 0:
            raise ConnectionClosed("connection closed inside chunked body")
        line, self.buf = self.buf[:idx], self.buf[idx + 2:]
        return line

    # responses -------------------------------------------------------------
    def read_response(self, head_only=False, timeout=None):
        """Read one complete response (head and body) and return it.

        ``head_only``: the request was HEAD, so no body follows whatever the
        headers say.  Raises ConnectionClosed if the server closed the
        connection without sending a (complete) response.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            idx = self._read_until(b"\r\n\r\n", deadline, MAX_HEAD_BYTES)
        except socket.timeout:
            raise HttpClientError("timed out waiting for a response head; "
                                  "got so far: %r" % self.buf[:1000])
        if idx < 0:
            raise ConnectionClosed(
                "connection closed before a complete response head; got: %r"
                % self.buf[:1000])
        raw_head, self.buf = self.buf[:idx + 4], self.buf[idx + 4:]
        lines = raw_head[:-4].decode("latin-1").split("\r\n")
        resp = Response(lines[0], lines[1:], raw_head=raw_head)
        try:
            resp.body = self._read_body(resp, head_only, deadline)
        except socket.timeout:
            raise HttpClientError("timed out reading the body of:\n%s"
                                  % resp.describe())
        self.last_response_done = time.monotonic()
        return resp

    def _read_body(self, resp, head_only, deadline):
        if (head_only or 100 <= resp.status < 200 or resp.status in (204, 304)):
            return b""
        te = resp.tokens("Transfer-Encoding")
        if te:
            if te[-1] != "chunked":
                return self._read_to_eof(deadline)
            body = b""
            while True:
                size_line = self._read_line(deadline).decode("latin-1")
                size = int(size_line.split(";", 1)[0].strip(), 16)
                if size == 0:
                    # trailer section, ends with an empty line
                    while self._read_line(deadline) != b"":
                        pass
                    return body
                body += self._read_exact(size, deadline)
                if len(body) > MAX_BODY_BYTES:
                    raise HttpClientError("chunked body too large")
                if self._read_exact(2, deadline) != b"\r\n":
                    raise HttpClientError("chunk not followed by CRLF")
        lengths = resp.get_all("Content-Length")
        if lengths:
            if len(set(lengths)) != 1:
                raise HttpClientError("conflicting Content-Length:\n%s"
                                      % resp.describe())
            return self._read_exact(int(lengths[0]), deadline)
        return self._read_to_eof(deadline)

    def _read_to_eof(self, deadline):
        while self._recv_some(deadline):
            if len(self.buf) > MAX_BODY_BYTES:
                raise HttpClientError("body too large")
        body, self.buf = self.buf, b""
        return body

    def request(self, data, head_only=None, timeout=None):
        """Send request bytes and read the response."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        if head_only is None:
            head_only = data.startswith(b"HEAD ")
        self.send(data)
        return self.read_response(head_only=head_only, timeout=timeout)

    # connection state ------------------------------------------------------
    def wait_for_close(self, timeout):
        """Wait up to ``timeout`` s for the server to close the connection.

        Returns the seconds between the end of the last response and EOF, or
        None if the connection was still open when the timeout expired.
        Unexpected data from the server is an error.
        """
        start = self.last_response_done or time.monotonic()
        deadline = time.monotonic() + timeout
        if self.buf:
            raise HttpClientError("unexpected extra bytes from server: %r"
                                  % self.buf[:500])
        try:
            while self._recv_some(deadline):
                raise HttpClientError("unexpected extra bytes from server: %r"
                                      % self.buf[:500])
        except socket.timeout:
            return None
        return time.monotonic() - start

    def is_closed(self, timeout=0.5):
        """True if the server closes the connection within ``timeout`` s."""
        return self.wait_for_close(timeout) is not None
