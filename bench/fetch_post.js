'use strict';
// POST load with Node's built-in fetch (undici) and its default keep-alive
// agent, as an application would send it: `loops` concurrent loops, each
// POSTing a small body, awaiting the response body, pausing `gap_ms`, and
// POSTing again, until `duration_ms` has passed or SIGINT/SIGTERM arrives.
// Used by bench/graceful.py against a handler that echoes the body.
//
//   node bench/fetch_post.js '<json>'
//
// The JSON configuration:
//   url          "http://127.0.0.1:PORT/echo"
//   loops        concurrent request loops (default 4)
//   duration_ms  upper bound of the run (default 60000)
//   gap_ms       pause after each response (default 20)
//   body_bytes   size of each POST body (default 64)
//   timeout_ms   abort a request after this long (default 10000)
//
// A POST succeeded when its status is 2xx and the response body is the body
// sent. A failure is counted under the code of its cause: undici's error
// code (UND_ERR_SOCKET: the server closed the connection, "other side
// closed", before answering), the system's (ECONNRESET, ECONNREFUSED, ...),
// "http-NNN" for a non-2xx status, "timeout", or "body-mismatch".
//
// Prints one JSON object when done: sent, succeeded, failed, failures by
// code, the responses that carried "Connection: close", the connections the
// agent opened and saw closed, and the first few failures with their time
// (ms since start) and messages.

const config = JSON.parse(process.argv[2]);
const loops = config.loops ?? 4;
const durationMs = config.duration_ms ?? 60000;
const gapMs = config.gap_ms ?? 20;
const bodyBytes = config.body_bytes ?? 64;
const timeoutMs = config.timeout_ms ?? 10000;
const SAMPLES = 20;

const t0 = performance.now();
const now = () => Math.round(performance.now() - t0);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const stats = {
  sent: 0, succeeded: 0, failed: 0, failures: {}, connection_close: 0,
  connects: 0, disconnects: 0, samples: [],
};
let stopping = false;
let wake = null;
const stop = () => {
  stopping = true;
  if (wake) wake();
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

function failureCode(err) {
  if (err.name === 'TimeoutError' || err.name === 'AbortError') {
    return 'timeout';
  }
  const cause = err.cause || {};
  return cause.code || err.code || cause.name || err.name || 'unknown';
}

function fail(code, detail, start) {
  stats.failed += 1;
  stats.failures[code] = (stats.failures[code] || 0) + 1;
  if (stats.samples.length < SAMPLES) {
    stats.samples.push({ start, t: now(), code, detail });
  }
}

async function loop(id) {
  let n = 0;
  while (!stopping) {
    const body = JSON.stringify({ loop: id, n: n++ }).padEnd(bodyBytes, '.');
    const start = now();
    stats.sent += 1;
    try {
      const res = await fetch(config.url, {
        method: 'POST', body,
        headers: { 'content-type': 'application/octet-stream' },
        signal: AbortSignal.timeout(timeoutMs),
      });
      if ((res.headers.get('connection') || '').toLowerCase() === 'close') {
        stats.connection_close += 1;
      }
      const text = await res.text();
      if (res.status < 200 || res.status > 299) {
        fail('http-' + res.status, text.slice(0, 200), start);
      } else if (text !== body) {
        fail('body-mismatch', text.slice(0, 200), start);
      } else {
        stats.succeeded += 1;
      }
    } catch (err) {
      const cause = err.cause || {};
      fail(failureCode(err), [err.message, cause.message].filter(Boolean)
        .join(': '), start);
    }
    if (gapMs > 0 && !stopping) await sleep(gapMs);
  }
}

async function main() {
  // Loading fetch creates undici's global dispatcher (an Agent): the one
  // every fetch() without a dispatcher of its own uses.
  await (await fetch('data:,warm-up')).text();
  const agent = globalThis[Symbol.for('undici.globalDispatcher.1')];
  if (agent) {
    agent.on('connect', () => { stats.connects += 1; });
    agent.on('disconnect', () => { stats.disconnects += 1; });
  }
  const deadline = new Promise((resolve) => {
    wake = resolve;
    setTimeout(resolve, durationMs);
  });
  const running = Promise.all(Array.from({ length: loops }, (_, i) => loop(i)));
  await deadline;
  stop();
  await running;
  process.stdout.write(JSON.stringify({
    node: process.versions.node, undici: process.versions.undici || null,
    loops, gap_ms: gapMs, body_bytes: bodyBytes, elapsed_ms: now(), ...stats,
  }) + '\n');
  // exit now: closing the agent would add disconnects of our own
  process.exit(0);
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ fatal: String(err && err.stack),
                                        ...stats }) + '\n');
  process.exit(2);
});
