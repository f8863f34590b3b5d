"""Debian's haproxy for the tests and benchmarks: started in the foreground
on 127.0.0.1 with a generated configuration (@PORT@: a free port it binds;
@SOCK@: its runtime API socket), and always stopped by the caller."""

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness.foreground import remove_dir, stop_foreground
from tests.harness.httpd import free_port

HAPROXY_BIN = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")


class Haproxy:
    """haproxy -db (foreground) with a generated configuration, in its own
    process group; stdout (its log, "log stdout format raw") to a file."""

    def __init__(self, config_text, name):
        self.dir = Path(tempfile.mkdtemp(prefix="ka-haproxy-%s-" % name))
        self.port = free_port()
        self.sock = self.dir / "admin.sock"
        self.cfg = self.dir / "haproxy.cfg"
        self.log_path = self.dir / "haproxy.log"
        self.cfg.write_text(config_text.replace("@PORT@", str(self.port))
                            .replace("@SOCK@", str(self.sock)))
        self.proc = None

    def start(self):
        check = subprocess.run([HAPROXY_BIN, "-c", "-q", "-f", str(self.cfg)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode:
            raise RuntimeError("haproxy -c: %s\n%s" % (check.stdout + check.stderr,
                                                       self.cfg.read_text()))
        out = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([HAPROXY_BIN, "-db", "-f", str(self.cfg)],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited with %s:\n%s" % (
                    self.proc.returncode, self.log()))
            if self.sock.exists():
                try:
                    if "Name: HAProxy" in self.runtime("show info"):
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("haproxy not ready within 10 s:\n%s" % self.log())

    def runtime(self, command):
        """One command on the runtime API (stats socket); its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        stop_foreground(self.proc)

    def cleanup(self):
        remove_dir(self.dir)


def tcp_balancer_config(ports, balance="roundrobin", disabled=(3,)):
    """An L4 balancer (mode tcp) in front of backends b1, b2, ... on
    ``ports``; those numbered in ``disabled`` start disabled, for "enable
    server be/bN" on the runtime API."""
    servers = "\n".join("    server b%d 127.0.0.1:%d%s" % (
        i, p, " disabled" if i in disabled else "") for i, p in enumerate(ports, 1))
    return """\
global
    nbthread 1
    stats socket @SOCK@ mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:@PORT@
    default_backend be
backend be
    balance %s
%s
""" % (balance, servers)
