"""One harness for the integration tests (tests/integration/) and the
benchmarks (bench/):

  httpd       HttpdServer: a generated configuration and a real apache2 run
              on 127.0.0.1 in its own process group (no pytest needed)
  rawhttp     RawConnection, build_request: a raw-socket HTTP/1.x client
  pipeline    Pipeline: batches of pipelined requests on one connection, and
              the child serving it and its memory
  wrk         parse_wrk, wrk_failures: wrk's summary
  cli         comma_choices: command-line helpers of the bench scripts
  haproxy     Haproxy: Debian's haproxy in the foreground, a balancer
  nginx       Nginx: Debian's nginx in the foreground, a reverse proxy
              with upstream keep-alive in front of one httpd
  foreground  stop_foreground, remove_dir: stopping those two
  servers     pytest side: selected MPMs, the module under test, serve()
  assertions  pytest side: assertions about keep-alive responses, idle-close
              timing
  configs     configuration pieces several test files serve
  metrics     the keepalive-status exposition checker, expected counter
              deltas (Expect), scrapes over one connection (Scraper)

Only servers, assertions and metrics are meant for tests: the bench
scripts import the others, which do not import pytest.
"""
