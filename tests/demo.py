"""`make run` (python3 -m tests.demo): serve a small demo site with
mod_keepalive loaded.

Starts Debian's apache2 in the foreground on 127.0.0.1:PORT with a generated
configuration that loads the module through conf.d/keepalive.load and
conf.d/keepalive.conf, prints how to try it, and shows each keep-alive
decision as it is made. Ctrl-C stops the server and leaves nothing running.
"""

import argparse
import os
import signal
import sys
import time

from tests.harness.httpd import HttpdServer, HttpdStartError

INDEX = b"""<!doctype html>
<html><head><title>mod_keepalive demo</title></head>
<body>
<h1>mod_keepalive demo</h1>
<p>Every persistent HTTP/1.x response from this server carries an honest
<code>Keep-Alive: timeout=T, max=M</code> header. Look at the response headers
of this page, and reload: <code>max</code> counts down on a reused connection.</p>
<p><a href="/hello.txt">/hello.txt</a> is a small static file to fetch with curl.</p>
</body></html>
"""

CONFIG = """\
# The demo's values: core's directives, which mod_keepalive advertises and the
# server enforces.
KeepAliveTimeout 5
MaxKeepAliveRequests 100
LogLevel notice keepalive:trace1
"""


def instructions(port):
    url = "http://127.0.0.1:%d/" % port
    return """
mod_keepalive demo: %(url)s  (mpm %(mpm)s)

Try it:
  # HTTP/1.1: persistent; three requests on one connection, max counts down
  curl -sv -o /dev/null -o /dev/null -o /dev/null %(url)s %(url)s %(url)s 2>&1 | grep -iE '^< (keep-alive|connection)|re-?using'

  # raw HTTP/1.0 without opt-in: "Connection: close", no Keep-Alive, closed at once
  exec 3<>/dev/tcp/127.0.0.1/%(port)d; printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3; exec 3<&-

  # raw HTTP/1.0 with "Connection: keep-alive": kept open, with Keep-Alive
  exec 3<>/dev/tcp/127.0.0.1/%(port)d; printf 'GET /hello.txt HTTP/1.0\\r\\nConnection: keep-alive\\r\\n\\r\\n' >&3; timeout 7 cat <&3; exec 3<&-

Each decision is shown below as the module logs it. Ctrl-C stops the server.
""" % {"url": url, "port": port, "mpm": MPM}


MPM = os.environ.get("MPM", "event")


def main():
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.demo",
        description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--module", required=True, help="path of mod_keepalive.so")
    args = parser.parse_args()

    server = HttpdServer(MPM, args.module, extra_config=CONFIG, name="demo",
                         port=args.port,
                         files={"htdocs/index.html": INDEX,
                                "htdocs/hello.txt": b"hello\n"})
    # SIGTERM (e.g. from a supervisor) stops the server as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.start()
    except HttpdStartError as e:
        sys.exit("make run: httpd did not start on 127.0.0.1:%d (PORT=... picks another)\n%s"
                 % (args.port, e))
    try:
        print(instructions(server.port), flush=True)
        seen = len(server.error_log())
        while server.running():
            text = server.error_log()
            for line in text[seen:].splitlines():
                if "[keepalive:" in line:
                    print(line.split("] ", 4)[-1], flush=True)
            seen = len(text)
            time.sleep(0.2)
        print("httpd exited; see %s" % server.error_log_path, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        # make passes a SIGTERM on too: one is enough to stop.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\nstopping httpd ...", flush=True)
    finally:
        server.stop(check=False)
        server.cleanup()


if __name__ == "__main__":
    main()
