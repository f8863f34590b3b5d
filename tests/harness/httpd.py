"""Generate, start and stop throw-away Apache httpd instances for the tests.

Each HttpdServer lives in a fresh temp directory that is its ServerRoot and
holds the generated httpd.conf, a DocumentRoot, logs and runtime files.  The
server is Debian's /usr/sbin/apache2 run in the foreground as our child, in
its own process group, so that stopping it can never leave anything behind.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

APACHE_BIN = os.environ.get("APACHE_BIN", "/usr/sbin/apache2")
APACHE_MODULES = Path(os.environ.get("APACHE_MODULES",
                                     "/usr/lib/apache2/modules"))
REPO_ROOT = Path(__file__).resolve().parents[2]
# The module `make` builds: what the tests and the benchmarks load unless
# told otherwise.
DEFAULT_MODULE = REPO_ROOT / "build" / "mod_keepalive.so"
KEEPALIVE_LOAD = REPO_ROOT / "conf.d" / "keepalive.load"
KEEPALIVE_CONF = REPO_ROOT / "conf.d" / "keepalive.conf"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
BIND_RETRIES = 5

READY_RE = re.compile(r"resuming normal operations")
BIND_FAIL_RE = re.compile(r"could not bind to address|Address already in use")
# "[Mon Nov 23 18:44:00.123456 2025] [keepalive:error] [pid 1:tid 2] ..."
LOG_LEVEL_RE = re.compile(r"^\[[^\]]*\] \[([^:\]]*):(\w+)\]")
CRASH_RE = re.compile(r"child pid \d+ exit signal")
BAD_LEVELS = ("error", "crit", "alert", "emerg")

MPM_CONFIG = {
    "prefork": """\
        StartServers 6
        MinSpareServers 4
        MaxSpareServers 10
        ServerLimit 16
        MaxRequestWorkers 16
        MaxConnectionsPerChild 0
        """,
    "worker": """\
        StartServers 2
        ServerLimit 4
        ThreadLimit 8
        ThreadsPerChild 8
        MinSpareThreads 4
        MaxSpareThreads 16
        MaxRequestWorkers 32
        MaxConnectionsPerChild 0
        """,
    "event": """\
        StartServers 2
        ServerLimit 4
        ThreadLimit 8
        ThreadsPerChild 8
        MinSpareThreads 4
        MaxSpareThreads 16
        MaxRequestWorkers 32
        MaxConnectionsPerChild 0
        """,
}

DOCS = {
    "index.html": b"<html><body><h1>mod_keepalive test</h1></body></html>\n",
    "small.txt": b"hello\n",
    "empty.txt": b"",
    "big.bin": bytes(range(256)) * 1024,       # 256 KiB
    "hdr/index.html": b"<html><body>headers test</body></html>\n",
}


def sleeping_lua_handler(seconds):
    """A mod_lua handler (its `handle` function) that keeps its worker busy
    for `seconds`, then answers "slow"."""
    return b"""\
function handle(r)
  r.usleep(%d)
  r.content_type = "text/plain"
  r:puts("slow\\n")
  return apache2.OK
end
""" % int(seconds * 1e6)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def keepalive_load_snippet(module_path):
    """conf.d/keepalive.load with its LoadModule path replaced by ours."""
    text = KEEPALIVE_LOAD.read_text()
    pattern = re.compile(r"^(\s*LoadModule\s+keepalive_module\s+)(\S+)(.*)$",
                         re.MULTILINE)
    matches = pattern.findall(text)
    if len(matches) != 1:
        raise RuntimeError("%s must contain exactly one 'LoadModule "
                           "keepalive_module <path>' line, found %d:\n%s"
                           % (KEEPALIVE_LOAD, len(matches), text))
    return pattern.sub(lambda m: m.group(1) + '"%s"' % module_path + m.group(3),
                       text)


def busy_sockets(port):
    """TCP sockets on 127.0.0.1:port in any state but LISTEN / TIME_WAIT."""
    busy = []
    try:
        with open("/proc/net/tcp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return busy
    for line in lines:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        lport = int(local.split(":")[1], 16)
        rport = int(remote.split(":")[1], 16)
        if state in ("0A", "06"):          # LISTEN, TIME_WAIT
            continue
        if lport == port or rport == port:
            busy.append((local, remote, state))
    return busy


_compiled_in = None


def compiled_in_modules():
    """Source names of the modules built into the httpd binary (apache2 -l)."""
    global _compiled_in
    if _compiled_in is None:
        out = subprocess.run([APACHE_BIN, "-l"], capture_output=True,
                             text=True, timeout=15, check=True).stdout
        _compiled_in = {l.strip() for l in out.splitlines()
                        if l.strip().endswith(".c")}
    return _compiled_in


def pgid_members(pgid):
    """PIDs of live (non-zombie) processes in process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # fields after "(comm)": state ppid pgrp ...
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[2]) == pgid and rest[0] != "Z":
            out.append(int(entry))
    return out


class HttpdStartError(RuntimeError):
    pass


class HttpdServer:
    """A generated httpd configuration plus the running server.

    module_path: path of mod_keepalive.so, or None to run core httpd alone.
    http2: load mod_http2 and enable "Protocols h2c http/1.1".
    keepalive: (KeepAlive, KeepAliveTimeout, MaxKeepAliveRequests) of the
        main server, written verbatim.
    extra_config: text appended at the end (vhosts, <Location>s, ...).
    extra_modules: module names (e.g. "lua") to load in addition, or
        (name, path) pairs for modules built elsewhere (LoadModule
        name_module path); all are loaded before mod_keepalive.
    files: {path relative to the server directory: bytes} written before
        start (e.g. scripts referenced by extra_config).
    port: listen on this port instead of a free one picked at start.
    executables: paths (relative to the server directory, among ``files``)
        made executable, e.g. CGI scripts.
    access_log: False leaves out the harness's own LogFormat and CustomLog
        (access_log_path), for a configuration that brings its own.
    extra_ports: number of additional free ports to listen on (for a
        backend <VirtualHost> or a proxy target); in extra_config they are
        @PORT1@, @PORT2@, ...
    In extra_config, @PORT@, @DIR@ and @DOCROOT@ are replaced by the
    listening port, the server directory and the DocumentRoot.
    """

    def __init__(self, mpm, module_path=None, http2=False,
                 keepalive=("On", "5", "100"), extra_config="",
                 extra_modules=(), files=None, log_level="notice",
                 name="httpd", port=None, executables=(), extra_ports=0,
                 access_log=True):
        if mpm not in MPM_CONFIG:
            raise ValueError("unknown MPM %r" % mpm)
        self.mpm = mpm
        self.module_path = (None if module_path is None
                            else Path(module_path).resolve())
        self.http2 = http2
        self.keepalive = keepalive
        self.extra_config = extra_config
        self.extra_modules = tuple(extra_modules)
        self.files = dict(files or {})
        self.log_level = log_level
        self.name = name
        self.dir = None
        self.fixed_port = port
        self.port = None
        self.executables = tuple(executables)
        self.extra_port_count = extra_ports
        self.writes_access_log = access_log
        self.extra_ports = []
        self.proc = None
        self.pgid = None
        self._checked_offset = 0

    # -- layout ------------------------------------------------------------
    @property
    def conf_path(self):
        return self.dir / "conf" / "httpd.conf"

    @property
    def error_log_path(self):
        return self.dir / "logs" / "error.log"

    @property
    def access_log_path(self):
        return self.dir / "logs" / "access.log"

    @property
    def stdio_path(self):
        return self.dir / "logs" / "stdio.log"

    @property
    def docroot(self):
        return self.dir / "htdocs"

    def _make_dirs(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ka-itest-%s-%s-"
                                         % (self.name, self.mpm)))
        for sub in ("conf", "logs", "run", "htdocs"):
            (self.dir / sub).mkdir()
        for rel, data in DOCS.items():
            p = self.docroot / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        for rel, data in self.files.items():
            p = self.dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        # httpd drops privileges to www-data when run as root: everything the
        # children read must be world-readable.
        for root, dirs, files in os.walk(self.dir):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        for rel in self.executables:
            os.chmod(self.dir / rel, 0o755)

    def _module_line(self, name, filename=None):
        if "mod_%s.c" % name in compiled_in_modules():
            return "# mod_%s is compiled into %s" % (name, APACHE_BIN)
        path = APACHE_MODULES / (filename or "mod_%s.so" % name)
        if not path.exists():
            raise HttpdStartError("required module file missing: %s" % path)
        return 'LoadModule %s_module "%s"' % (name, path)

    def config_text(self):
        d = self.dir
        lines = [
            "# generated by tests/harness/httpd.py",
            'ServerRoot "%s"' % d,
            'DefaultRuntimeDir "%s/run"' % d,
            'PidFile "%s/run/httpd.pid"' % d,
            'Mutex file:%s/run default' % d,
            'ErrorLog "%s"' % self.error_log_path,
            "LogLevel %s" % self.log_level,
            self._module_line("mpm_%s" % self.mpm),
            self._module_line("authz_core"),
            self._module_line("mime"),
            self._module_line("dir"),
            self._module_line("log_config"),
            self._module_line("headers"),
        ]
        for mod in self.extra_modules:
            if isinstance(mod, tuple):
                lines.append('LoadModule %s_module "%s"' % mod)
            else:
                lines.append(self._module_line(mod))
        if self.http2:
            lines.append(self._module_line("http2"))
        if self.module_path is not None:
            lines.append("# --- conf.d/keepalive.load, path substituted ---")
            lines.append(keepalive_load_snippet(self.module_path).rstrip())
            lines.append('Include "%s"' % KEEPALIVE_CONF)
            lines.append("# --- end of mod_keepalive snippets ---")
        if os.geteuid() == 0:
            lines += ["User www-data", "Group www-data"]
        mime_types = "/etc/mime.types"
        if not os.path.exists(mime_types):
            mime_types = str(d / "conf" / "mime.types")
            Path(mime_types).write_text("text/html html\ntext/plain txt\n")
        lines += ["Listen 127.0.0.1:%d" % p for p in self.extra_ports]
        lines += [
            "Listen 127.0.0.1:%d" % self.port,
            "ServerName 127.0.0.1",
            "ServerAdmin webmaster@localhost",
            "Timeout 10",
            'TypesConfig "%s"' % mime_types,
        ]
        if self.writes_access_log:
            lines += [
                'LogFormat "%h %l %u %t \\"%r\\" %>s %b ka=%k conn=%X port=%{remote}p" ka',
                'CustomLog "%s" ka' % self.access_log_path,
            ]
        lines += [
            'DocumentRoot "%s"' % self.docroot,
            "<Directory />",
            "    AllowOverride None",
            "    Require all denied",
            "</Directory>",
            '<Directory "%s">' % self.docroot,
            "    AllowOverride None",
            "    Require all granted",
            "</Directory>",
            "DirectoryIndex index.html",
            "KeepAlive %s" % self.keepalive[0],
            "KeepAliveTimeout %s" % self.keepalive[1],
            "MaxKeepAliveRequests %s" % self.keepalive[2],
            "<IfModule mpm_%s_module>" % self.mpm,
        ]
        lines += ["    " + l for l in
                  textwrap.dedent(MPM_CONFIG[self.mpm]).strip().splitlines()]
        lines.append("</IfModule>")
        if self.http2:
            lines.append("Protocols h2c http/1.1")
        if self.extra_config:
            text = textwrap.dedent(self.extra_config).strip()
            for i, p in enumerate(self.extra_ports, 1):
                text = text.replace("@PORT%d@" % i, str(p))
            lines.append("# --- test specific configuration ---")
            lines.append(text.replace("@PORT@", str(self.port))
                         .replace("@DIR@", str(self.dir))
                         .replace("@DOCROOT@", str(self.docroot)))
        return "\n".join(lines) + "\n"

    def _pick_ports(self):
        self.port = self.fixed_port or free_port()
        self.extra_ports = []
        while len(self.extra_ports) < self.extra_port_count:
            p = free_port()
            if p != self.port and p not in self.extra_ports:
                self.extra_ports.append(p)

    def configtest(self, *defines):
        """Generate the directory and configuration without starting, run
        ``apache2 -t`` on it (with ``-D NAME`` for each of ``defines``, e.g.
        DUMP_MODULES) and return the CompletedProcess (output in .stdout
        and .stderr).  Call cleanup() afterwards."""
        if self.dir is None:
            self._make_dirs()
        self._pick_ports()
        self.conf_path.write_text(self.config_text())
        os.chmod(self.conf_path, 0o644)
        return subprocess.run(
            [APACHE_BIN, "-t", "-f", str(self.conf_path), "-d", str(self.dir)]
            + [arg for name in defines for arg in ("-D", name)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=30, env=self._env())

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        self._make_dirs()
        last_error = None
        for _attempt in range(1 if self.fixed_port else BIND_RETRIES):
            self._pick_ports()
            self.conf_path.write_text(self.config_text())
            os.chmod(self.conf_path, 0o644)
            for p in (self.error_log_path, self.stdio_path):
                if p.exists():
                    p.unlink()
            try:
                self._launch()
                return self
            except HttpdStartError as e:
                last_error = e
                if not BIND_FAIL_RE.search(str(e)):
                    raise
        raise last_error

    def _launch(self):
        stdio = open(self.stdio_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [APACHE_BIN, "-f", str(self.conf_path), "-d", str(self.dir),
                 "-D", "FOREGROUND"],
                stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio,
                start_new_session=True, env=self._env())
        finally:
            stdio.close()
        self.pgid = self.proc.pid     # session leader == process group id
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap_group()
                raise HttpdStartError(
                    "httpd (%s) exited with status %s during startup\n%s"
                    % (self.mpm, self.proc.returncode, self.diagnostics()))
            if READY_RE.search(self.error_log()) and port_accepts(self.port):
                self._checked_offset = 0
                return
            time.sleep(0.05)
        self.stop(check=False)
        raise HttpdStartError("httpd (%s) not ready on port %d within %.0fs\n%s"
                              % (self.mpm, self.port, START_TIMEOUT,
                                 self.diagnostics()))

    def _env(self):
        env = dict(os.environ)
        # Debian's apache2 binary wants these when run without apache2ctl;
        # our own config never references them.
        env.setdefault("APACHE_RUN_DIR", str(self.dir / "run"))
        env.setdefault("APACHE_LOG_DIR", str(self.dir / "logs"))
        env["LANG"] = "C"
        return env

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def children(self):
        """PIDs of the server's live child processes (not the parent)."""
        return [p for p in pgid_members(self.pgid) if p != self.proc.pid]

    def graceful_stop(self):
        """What "apache2 -k graceful-stop" does: SIGWINCH to the parent.
        The parent stops listening and exits once the requests in progress
        are done; stop() afterwards reaps it."""
        os.kill(self.proc.pid, signal.SIGWINCH)

    def stop(self, check=True):
        """Stop the server: SIGTERM to the parent, bounded wait, then
        SIGKILL to whatever is left of the process group.

        SIGTERM goes to the parent only, as "apache2ctl stop" does: the
        parent stops its children itself; the group is only SIGKILLed if
        anything is still alive after the bounded wait.

        Returns the list of problem lines from the error log (see
        log_problems()) if ``check`` is true.
        """
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self._wait_connections_settled()
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._reap_group()
        left = pgid_members(self.pgid)
        if left:
            raise AssertionError("httpd processes left behind after stop: %r"
                                 % left)
        return self.new_log_problems() if check else []

    def _wait_connections_settled(self, timeout=2.0, settle=0.15):
        """Wait (bounded) until no connection to our port is still being
        handled (only LISTEN and TIME_WAIT sockets left), then a little more.

        Debian's httpd 2.4.71 event MPM now and then segfaults when it is
        stopped while a worker is just finishing a connection: a child's
        main thread crashes in apr_os_sock_get() called from mod_mpm_event
        while it handles the stop.  Reproduced with core httpd alone (no
        mod_keepalive, no mod_http2): ~3% of SIGTERMs sent right after a
        client closed its connection, 0 of 300 with this wait.  Waiting
        keeps that core bug out of the results, so that a crash reported by
        this harness points at the module.
        """
        deadline = time.monotonic() + timeout
        while (any(busy_sockets(p) for p in [self.port] + self.extra_ports)
               and time.monotonic() < deadline):
            time.sleep(0.02)
        time.sleep(settle)

    def _reap_group(self, grace=2.0):
        """Wait ``grace`` s for the group to vanish, then SIGKILL it."""
        end = time.monotonic() + grace
        while pgid_members(self.pgid) and time.monotonic() < end:
            time.sleep(0.05)
        if pgid_members(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            end = time.monotonic() + 5
            while pgid_members(self.pgid) and time.monotonic() < end:
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)

    def cleanup(self):
        if self.dir is not None and not os.environ.get("KEEP_HTTPD_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- logs --------------------------------------------------------------
    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self):
        try:
            return self.access_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self):
        out = ["config: %s" % self.conf_path]
        try:
            out.append("--- stdout/stderr ---\n" + self.stdio_path.read_text(
                errors="replace"))
        except FileNotFoundError:
            pass
        out.append("--- error log ---\n" + self.error_log())
        return "\n".join(out)

    @staticmethod
    def log_problems(text):
        """Lines showing a mod_keepalive error or a crashed child."""
        bad = []
        for line in text.splitlines():
            if CRASH_RE.search(line):
                bad.append(line)
                continue
            m = LOG_LEVEL_RE.match(line)
            if not m:
                continue
            module, level = m.group(1).lower(), m.group(2).lower()
            if level in BAD_LEVELS and ("keepalive" in module
                                        or "mod_keepalive" in line):
                bad.append(line)
        return bad

    def new_log_problems(self):
        """Problems logged since the last call (or since startup)."""
        text = self.error_log()
        new = text[self._checked_offset:]
        self._checked_offset = len(text)
        return self.log_problems(new)

    def __repr__(self):
        return "<HttpdServer %s mpm=%s port=%s dir=%s>" % (
            self.name, self.mpm, self.port, self.dir)
