"""Per-request data comes from the request pool only: one keep-alive
connection carrying 100,000 requests does not make the process serving it
grow.  Requests are pipelined in batches of 500 on ONE connection (no
request limit); the resident size (VmRSS) of the child holding that
connection is taken after a 10,000-request warm-up and at the end.

Two servers: core's MaxKeepAliveRequests 0 alone, and every mod_keepalive
directive in use (server level and in a <Location> the requests hit), so
that their per-request code paths run 100,000 times too.
"""

import time

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.pipeline import Pipeline, memory_kib, serving_child
from tests.harness.servers import serve

TOTAL = 100_000
WARMUP = 10_000
BATCH = 500
MAX_GROWTH_KIB = 512
TIME_LIMIT = 120.0          # seconds for the whole run on one connection

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


def run_growth_check(server, keepalive_line):
    start = time.monotonic()
    p = Pipeline(server.port, keepalive_line, start + TIME_LIMIT, timeout=10)
    try:
        p.batch(BATCH)
        pid = serving_child(server, p.client_port())
        while p.done < WARMUP:
            p.batch(BATCH)
        before = memory_kib(pid)["VmRSS"]
        while p.done < TOTAL:
            p.batch(BATCH)
        after = memory_kib(pid)["VmRSS"]
        assert serving_child(server, p.client_port()) == pid
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


# The two servers differ only in configuration: the fixture is looked up by
# name so that each still starts once per MPM, when its case runs ("mpm" is
# named so that pytest parametrizes the test by MPM before the lookup).
@pytest.mark.parametrize("server_fixture,keepalive_line", [
    ("core_unlimited_server", b"Keep-Alive: timeout=5\r\n"),
    ("directives_server", b"Keep-Alive: timeout=4\r\n"),
], ids=["core-unlimited", "every-directive"])
def test_100k_requests_on_one_connection_do_not_grow_the_child(
        request, mpm, server_fixture, keepalive_line):
    run_growth_check(request.getfixturevalue(server_fixture), keepalive_line)
