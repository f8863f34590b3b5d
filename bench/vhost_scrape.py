"""The size of one keepalive-status scrape on a server with many virtual
hosts, few of them active (docs/metrics.md, "Sizing for many virtual
hosts"): N name-based virtual hosts on one port, traffic to A of them, then
one Prometheus scrape and one JSON scrape, their sizes printed, and the
Prometheus one checked with promtool.

    /usr/bin/python3 -m bench.vhost_scrape [--vhosts 5000] [--active 100]
        [--mpm event] [--module build/mod_keepalive.so]
"""

import argparse
import subprocess
import time
import urllib.request

from tests.harness.httpd import DEFAULT_MODULE, HttpdServer


def config(vhosts):
    parts = []
    for i in range(vhosts):
        parts.append("<VirtualHost 127.0.0.1:@PORT@>\n"
                     "    ServerName vhost%05d.example.test\n"
                     "</VirtualHost>" % i)
    parts.append("<VirtualHost 127.0.0.1:@PORT@>\n"
                 "    ServerName metrics.test\n"
                 "    <Location /ka-status>\n"
                 "        SetHandler keepalive-status\n"
                 "    </Location>\n"
                 "</VirtualHost>")
    return "\n".join(parts)


def get(port, host, path="/"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers={"Host": host})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vhosts", type=int, default=5000)
    ap.add_argument("--active", type=int, default=100)
    ap.add_argument("--requests", type=int, default=3,
                    help="requests to each active virtual host")
    ap.add_argument("--mpm", default="event")
    ap.add_argument("--module", default=str(DEFAULT_MODULE))
    args = ap.parse_args()

    server = HttpdServer(args.mpm, args.module, extra_config=config(args.vhosts),
                         name="vhost-scrape")
    t0 = time.monotonic()
    server.start()
    try:
        started = time.monotonic() - t0
        step = max(1, args.vhosts // max(1, args.active))
        active = [i * step for i in range(args.active)]
        for i in active:
            for _ in range(args.requests):
                get(server.port, "vhost%05d.example.test" % i)
        time.sleep(0.5)
        prom = get(server.port, "metrics.test", "/ka-status")
        json_body = get(server.port, "metrics.test", "/ka-status?format=json")
        text = prom.decode()
        labelled = {line.split('vhost="', 1)[1].split('"', 1)[0]
                    for line in text.splitlines() if 'vhost="' in line}
        total = [l for l in text.splitlines()
                 if l.startswith("keepalive_requests_total ")]
        check = subprocess.run(["promtool", "check", "metrics"], input=prom,
                               capture_output=True)
        print("mpm %s, %d virtual hosts, %d active (%d requests each), "
              "module %s" % (args.mpm, args.vhosts, args.active,
                             args.requests, args.module))
        print("start-up: %.1f s" % started)
        print("Prometheus scrape: %d bytes (%.1f KiB), %d lines, "
              "%d vhost labels" % (len(prom), len(prom) / 1024,
                                   text.count("\n"), len(labelled)))
        print("JSON scrape: %d bytes (%.1f KiB)" % (len(json_body),
                                                    len(json_body) / 1024))
        print("total line: %s" % (total[0] if total else "missing"))
        print("promtool check metrics: exit %d %s" % (
            check.returncode, (check.stdout + check.stderr).decode().strip()))
    finally:
        server.stop(check=False)
        server.cleanup()


if __name__ == "__main__":
    main()
