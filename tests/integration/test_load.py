"""Many keep-alive requests from several connections at once (wrk): every
response is honest, nothing is left half-done, and no child crashes (the
autouse log check fails the test on any "child pid ... exit signal" line or
mod_keepalive error)."""

import re
import shutil
import subprocess

import pytest

from tests.harness.httpd import HttpdServer
from tests.harness.servers import serve
from tests.harness.wrk import parse_wrk

WRK_SCRIPT = r"""
-- Classify every response: a Keep-Alive header matching the pattern given
-- as script argument, or no Keep-Alive and "Connection: close".
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  pattern = args[1]
  good, closes, bad, sample = 0, 0, 0, ""
end

function response(status, headers, body)
  local ka, conn, count = nil, "", 0
  for k, v in pairs(headers) do
    local name = string.lower(k)
    if name == "keep-alive" then ka = v; count = count + 1 end
    if name == "connection" then conn = string.lower(v) end
  end
  if status == 200 and count == 1 and string.match(ka, pattern)
     and not string.find(conn, "close") then
    good = good + 1
  elseif status == 200 and ka == nil and string.find(conn, "close") then
    closes = closes + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = "status=" .. status .. " Keep-Alive=" .. tostring(ka) ..
               " Connection=" .. conn
    end
  end
end

function done(summary, latency, requests)
  local g, c, b = 0, 0, 0
  for _, t in ipairs(threads) do
    g = g + t:get("good"); c = c + t:get("closes"); b = b + t:get("bad")
    local s = t:get("sample")
    if s ~= "" then io.write("SAMPLE ", s, "\n") end
  end
  io.write(string.format("GOOD %d\nCLOSES %d\nBAD %d\n", g, c, b))
end
"""


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "20"), name="load"))


# event's listener closes every idle keep-alive connection of a process that
# momentarily has no idle thread ("All workers are busy or dying"), core
# httpd alone too; wrk sees those as read errors. With more threads per
# process than wrk has connections, that cannot happen; and with room for
# all of them as spares, no process is stopped as surplus meanwhile.
EVENT_ROOM = """\
<IfModule mpm_event_module>
    ThreadLimit 16
    ThreadsPerChild 16
    MaxRequestWorkers 64
    MaxSpareThreads 64
</IfModule>
"""


@pytest.fixture(scope="module")
def unlimited_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "0"),
                                 extra_config=EVENT_ROOM,
                                 name="load-unlimited"))


def run_wrk(server, tmp_path, pattern, seconds=1):
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk not installed")
    script = tmp_path / "classify.lua"
    script.write_text(WRK_SCRIPT)
    args = [wrk, "-t2", "-c8", "-d%ds" % seconds, "--timeout", "3s",
            "-s", str(script), "http://127.0.0.1:%d/small.txt" % server.port,
            "--", pattern]
    proc = subprocess.run(args, capture_output=True, text=True,
                          timeout=seconds + 30)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = {k: int(v) for k, v in
              re.findall(r"^(GOOD|CLOSES|BAD) (\d+)$", out, re.MULTILINE)}
    assert set(counts) == {"GOOD", "CLOSES", "BAD"}, out
    return counts, out


def test_every_response_under_load_is_honest_with_a_budget(server, tmp_path):
    counts, out = run_wrk(server, tmp_path, "^timeout=5, max=%d+$")
    assert counts["BAD"] == 0, out
    assert counts["GOOD"] > 100, out
    # MaxKeepAliveRequests 20: every 21st response closes its connection
    total = counts["GOOD"] + counts["CLOSES"]
    assert counts["CLOSES"] >= total // 21 - 8, out
    # wrk occasionally counts a few "read" errors around the connections
    # the server closes (seen under event with core httpd alone too), so
    # only connect/write/timeout errors count here.
    errors = parse_wrk(out)
    assert errors["connect"] == errors["write"] == errors["timeout"] == 0, out
    assert errors["read"] <= max(5, counts["CLOSES"] // 50), out


def test_every_response_under_load_is_honest_without_a_budget(
        unlimited_server, tmp_path):
    counts, out = run_wrk(unlimited_server, tmp_path, "^timeout=5$")
    assert counts["BAD"] == 0, out
    assert counts["CLOSES"] == 0, out
    assert counts["GOOD"] > 100, out
    assert "Socket errors" not in out, out
