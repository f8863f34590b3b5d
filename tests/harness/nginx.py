"""Debian's nginx as a reverse proxy for the benchmarks: started in the
foreground (daemon off) on 127.0.0.1 with a generated configuration, its pid
file, logs and temp directories in a fresh temp directory, and always
stopped by the caller. The distro's own nginx service is never involved
(install the package with apxs/install-deps, which keeps it from starting).
"""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness.foreground import remove_dir, stop_foreground
from tests.harness.httpd import free_port, port_accepts

NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")

# The access log says, like the httpd harness's "ka=%k", whether a request
# came on a connection that had served one before: ka=0 for the first
# request of a client connection, ka=1 for any later one (nginx's
# $connection_requests counts from 1; a log_format cannot subtract).
PROXY_CONFIG = """\
daemon off;
master_process on;
worker_processes {workers};
pid "{dir}/nginx.pid";
error_log "{dir}/error.log" warn;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path "{dir}/tmp/body";
    proxy_temp_path "{dir}/tmp/proxy";
    fastcgi_temp_path "{dir}/tmp/fastcgi";
    uwsgi_temp_path "{dir}/tmp/uwsgi";
    scgi_temp_path "{dir}/tmp/scgi";
    map $connection_requests $ka {{
        1 0;
        default 1;
    }}
    log_format ka '$remote_addr - - [$time_local] "$request" $status '
                  '$body_bytes_sent ka=$ka';
    access_log "{dir}/access.log" ka;
    keepalive_timeout {client_timeout}s;
    keepalive_requests {client_requests};
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive {upstream_keepalive};
        keepalive_timeout {upstream_timeout}s;
        keepalive_requests {upstream_requests};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Nginx:
    """nginx (daemon off) in front of one backend on ``backend_port``, in
    its own process group. ``upstream_keepalive``: idle connections to the
    backend each nginx worker keeps (the upstream's "keepalive N");
    ``upstream_timeout`` should stay below the backend's KeepAliveTimeout,
    so that nginx, not httpd, closes an idle upstream connection (no reuse
    race). ``client_timeout`` and ``client_requests`` are the client-side
    keepalive_timeout and keepalive_requests."""

    def __init__(self, backend_port, upstream_keepalive, name="proxy",
                 workers=1, upstream_timeout=4, upstream_requests=1000,
                 client_timeout=5, client_requests=100):
        self.dir = Path(tempfile.mkdtemp(prefix="ka-nginx-%s-" % name))
        os.chmod(self.dir, 0o755)
        (self.dir / "tmp").mkdir()
        self.settings = dict(
            workers=workers, backend_port=backend_port,
            upstream_keepalive=upstream_keepalive,
            upstream_timeout=upstream_timeout,
            upstream_requests=upstream_requests,
            client_timeout=client_timeout, client_requests=client_requests)
        self.port = None
        self.proc = None

    @property
    def conf_path(self):
        return self.dir / "nginx.conf"

    @property
    def access_log_path(self):
        return self.dir / "access.log"

    @property
    def error_log_path(self):
        return self.dir / "error.log"

    def _command(self, *extra):
        # -e: the error log before the configuration is read (otherwise
        # /var/log/nginx/error.log); -p: the prefix, for anything relative.
        return [NGINX_BIN, "-p", str(self.dir), "-e", str(self.error_log_path),
                "-c", str(self.conf_path)] + list(extra)

    def start(self, attempts=5):
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            self.conf_path.write_text(PROXY_CONFIG.format(
                dir=self.dir, port=self.port, **self.settings))
            check = subprocess.run(self._command("-t", "-q"),
                                   capture_output=True, text=True, timeout=30)
            if check.returncode:
                raise RuntimeError("nginx -t: %s\n%s" % (
                    check.stdout + check.stderr, self.conf_path.read_text()))
            out = open(self.dir / "stdio.log", "wb")
            try:
                self.proc = subprocess.Popen(
                    self._command(), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                out.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_accepts(self.port):
                    return self
                time.sleep(0.05)
            last = self.error_log()
            self.stop()
            if "Address already in use" not in last:
                break
        raise RuntimeError("nginx did not start on 127.0.0.1:%s:\n%s"
                           % (self.port, last))

    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        """SIGQUIT (graceful: idle connections are closed at once), a bounded
        wait, then SIGKILL to what is left of the process group."""
        stop_foreground(self.proc, signal.SIGQUIT)

    def cleanup(self):
        remove_dir(self.dir)
