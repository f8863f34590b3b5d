"""A real Prometheus server for the tests: Debian's prometheus package,
started on 127.0.0.1 with a generated configuration, scraping the given
targets every second; always stopped by the caller (a context manager).
Also promtool, the same package's checker."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.harness.httpd import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "docs" / "prometheus" / "keepalive.rules.yml"
START_TIMEOUT = 30.0


def promtool(*args, stdin=None):
    """promtool ARGS; returns the CompletedProcess (text)."""
    return subprocess.run(["promtool"] + list(args), input=stdin, capture_output=True, text=True, timeout=60)


class PrometheusServer:
    """prometheus scraping ``targets`` ("127.0.0.1:PORT") at ``metrics_path``
    every second, with ``rule_files`` loaded."""

    def __init__(self, targets, metrics_path, rule_files=()):
        self.targets = list(targets)
        self.metrics_path = metrics_path
        self.rule_files = [str(p) for p in rule_files]
        self.dir = None
        self.port = None
        self.proc = None

    def config_text(self):
        return json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": [{
                "job_name": "apache",
                "metrics_path": self.metrics_path,
                "static_configs": [{"targets": self.targets}],
            }],
        }, indent=2)

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ka-prometheus-"))
        (self.dir / "prometheus.yml").write_text(self.config_text())
        self.port = free_port()
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=%s" % (self.dir / "prometheus.yml"),
             "--storage.tsdb.path=%s" % (self.dir / "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited at start-up:\n%s" % self.log_text())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("prometheus not ready within %d s:\n%s" % (START_TIMEOUT, self.log_text()))
            time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if self.log:
            self.log.close()
            self.log = None
        if self.dir and not any(exc):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def log_text(self):
        return (self.dir / "prometheus.log").read_text(errors="replace")[-4000:]

    def query(self, promql):
        """The instant vector of ``promql``: {frozenset(labels): value}."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        if answer.get("status") != "success":
            raise RuntimeError("query %r failed: %r" % (promql, answer))
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in answer["data"]["result"]}

    def targets_health(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/targets" % self.port, timeout=10) as r:
            answer = json.load(r)
        return [(t["scrapeUrl"], t["health"], t.get("lastError", "")) for t in answer["data"]["activeTargets"]]
