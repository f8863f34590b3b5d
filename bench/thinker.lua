-- wrk script for "thinking" clients: every connection sends a request, reads
-- the response, thinks THINK_MS (wrk's delay() hook), then sends the next
-- request on the same connection. wrk keeps connections open between
-- requests; when a response says "Connection: close", or the server closes
-- the idle connection, wrk connects again at once and still thinks before
-- it sends (httpd's default "AcceptFilter http data", TCP_DEFER_ACCEPT on
-- Linux, keeps such a silent new connection away from the workers).
--
--   wrk -t2 -c64 -d3600s --timeout 60s -s bench/thinker.lua URL -- THINK_MS CONNS_PER_THREAD
--
-- wrk calls delay() before every request, the first one of each connection
-- included. The first CONNS_PER_THREAD calls of a thread are those first
-- requests: they wait a random time in [0, THINK_MS) so that the clients do
-- not all send in the same millisecond; every later think is THINK_MS.
--
-- One wrk 4.1 quirk is neutralised here. When the server closes a connection
-- while its client thinks (an idle timeout shorter than the think time, or
-- event's listener closing keep-alive connections when all workers of a
-- process are busy), wrk reconnects and calls delay() a second time while
-- the first think timer is still pending. Both timers would then send a
-- request: that client would send twice per think time from then on, and
-- again twice more after every further such close. A legitimate delay()
-- always follows a response (or is one of the first ones), so each thread
-- holds one token per connection plus one per response; a delay() without
-- a token is such a second timer and gets one that never fires (10^9 ms),
-- while the first timer sends the request after the normal think time.
-- These are counted as "idle_closes": idle connections the server closed
-- while their client was thinking.
--
-- done() prints one line for bench/adaptive.py:
--   THINKER requests=N duration_us=N closes=N idle_closes=N non200=N
--   errors_connect=N errors_read=N errors_write=N errors_timeout=N
--   lat_mean_us=N lat_p50_us=N lat_p90_us=N lat_p99_us=N lat_max_us=N
-- "closes" counts responses that said "Connection: close" (each makes wrk
-- open a new connection). Connection reuse is counted exactly by the runner
-- from the server's access log (%k).

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  think_ms = tonumber(args[1]) or 1000
  first_delays = tonumber(args[2]) or 0
  tokens = first_delays
  closes, idle_closes, non200 = 0, 0, 0
  math.randomseed(os.time() * 1000 + (thread_no or 0))
end

function delay()
  if tokens <= 0 then
    idle_closes = idle_closes + 1
    return 1000000000
  end
  tokens = tokens - 1
  if first_delays > 0 then
    first_delays = first_delays - 1
    return math.random(0, think_ms - 1)
  end
  return think_ms
end

function response(status, headers, body)
  tokens = tokens + 1
  if status ~= 200 then non200 = non200 + 1 end
  for name, value in pairs(headers) do
    if string.lower(name) == "connection" and string.find(string.lower(value), "close", 1, true) then
      closes = closes + 1
    end
  end
end

function done(summary, latency, requests)
  local c, i, n = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("closes")
    i = i + t:get("idle_closes")
    n = n + t:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    "THINKER requests=%d duration_us=%d closes=%d idle_closes=%d non200=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d " ..
    "lat_mean_us=%d lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_max_us=%d\n",
    summary.requests, summary.duration, c, i, n,
    e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
