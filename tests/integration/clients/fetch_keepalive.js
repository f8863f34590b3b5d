'use strict';
// Node's built-in fetch (undici) against a keep-alive server, as an
// application would use it: sequential requests with pauses in between.
//
//   node fetch_keepalive.js '<json>'
//
// The JSON configuration:
//   base          "http://127.0.0.1:PORT"
//   requests      [{path, gap}], gap before each request after the first,
//                 measured from the end of the previous response's body:
//                 {ms: N}, {window_minus: N} (undici's own reuse window for
//                 the connection, learnt from the previous Keep-Alive hint,
//                 minus N ms) or {hint_minus: N} (the advertised timeout
//                 minus N ms)
//   threshold_ms  null: the global dispatcher, exactly as fetch() uses it;
//                 a number: an Agent of the same undici with that
//                 keepAliveTimeoutThreshold (0: trusts the hint fully)
//   linger        how long to keep watching connections after the last
//                 response (who closes an idle connection first: undici's
//                 own idle timer, or the server): {ms: N} or
//                 {window_plus: N} (undici's reuse window plus N ms)
//
// Prints one JSON object: the undici settings read from its Client objects,
// every request (status, Keep-Alive and Connection headers, undici's reuse
// window after it, or the error), and every connect/disconnect event of the
// dispatcher with its reason ("socket idle timeout" and "reset" are undici
// closing; "other side closed" is the server closing first).

const config = JSON.parse(process.argv[2]);
const t0 = performance.now();
const now = () => Math.round((performance.now() - t0) * 10) / 10;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const results = [];
const events = [];

function describeError(err) {
  if (!err) return null;
  const cause = err.cause || null;
  return {
    name: err.name, message: err.message, code: err.code || null,
    cause: cause && { name: cause.name, message: cause.message,
                      code: cause.code || null },
  };
}

// undici keeps its settings under Symbol-keyed properties of each Client.
// Walk Agent -> Pool -> Client through the properties named Symbol(clients)
// (Maps of WeakRefs in undici 5, Maps of dispatchers in 6, arrays in pools).
function undiciClients(root) {
  const found = [];
  const seen = new Set();
  const walk = (obj, depth) => {
    if (!obj || typeof obj !== 'object' || seen.has(obj) || depth > 5) return;
    seen.add(obj);
    if (typeof obj.deref === 'function') return walk(obj.deref(), depth + 1);
    if (obj instanceof Map) {
      for (const v of obj.values()) walk(v, depth + 1);
      return;
    }
    if (Array.isArray(obj)) {
      for (const v of obj) walk(v, depth + 1);
      return;
    }
    const syms = Object.getOwnPropertySymbols(obj);
    if (syms.some((s) => s.description === 'keep alive timeout threshold')) {
      found.push(obj);
      return;
    }
    for (const s of syms) {
      if (s.description === 'clients') walk(obj[s], depth + 1);
    }
  };
  walk(root, 0);
  return found;
}

function clientSetting(client, description) {
  const sym = Object.getOwnPropertySymbols(client)
    .find((s) => s.description === description);
  return sym === undefined ? null : client[sym];
}

function settings(agent) {
  return undiciClients(agent).map((c) => ({
    threshold_ms: clientSetting(c, 'keep alive timeout threshold'),
    window_ms: clientSetting(c, 'keep alive timeout'),
    default_ms: clientSetting(c, 'default keep alive timeout'),
    max_ms: clientSetting(c, 'max keep alive timeout'),
  }));
}

async function main() {
  // Loading fetch creates undici's global dispatcher (an Agent).
  await (await fetch('data:,warm-up')).text();
  const globalAgent = globalThis[Symbol.for('undici.globalDispatcher.1')];
  if (!globalAgent) throw new Error('no undici global dispatcher after fetch');
  let agent = globalAgent;
  if (config.threshold_ms !== null && config.threshold_ms !== undefined) {
    agent = new globalAgent.constructor({
      keepAliveTimeoutThreshold: config.threshold_ms });
  }
  agent.on('connect', () => events.push({ t: now(), type: 'connect' }));
  agent.on('disconnect', (origin, targets, err) =>
    events.push({ t: now(), type: 'disconnect', error: describeError(err) }));
  agent.on('connectionError', (origin, targets, err) =>
    events.push({ t: now(), type: 'connectionError',
                  error: describeError(err) }));

  let reuseWindow = null;
  let hint = null;
  for (const [i, req] of config.requests.entries()) {
    if (i > 0) {
      const gap = req.gap || { ms: 0 };
      let ms;
      if ('ms' in gap) ms = gap.ms;
      else if ('window_minus' in gap) {
        if (reuseWindow === null) throw new Error('no reuse window learnt');
        ms = reuseWindow - gap.window_minus;
      } else if ('hint_minus' in gap) {
        if (hint === null) throw new Error('no Keep-Alive hint received');
        ms = hint - gap.hint_minus;
      } else throw new Error('bad gap ' + JSON.stringify(gap));
      await sleep(Math.max(0, ms));
    }
    const r = { i, path: req.path, start: now() };
    try {
      const res = await fetch(config.base + req.path,
                              agent === globalAgent ? {} : { dispatcher: agent });
      r.status = res.status;
      r.keep_alive = res.headers.get('keep-alive');
      r.connection = res.headers.get('connection');
      r.body_bytes = (await res.arrayBuffer()).byteLength;
    } catch (err) {
      r.error = describeError(err);
    }
    r.end = now();
    // The window undici reuses the connection in after this response, as
    // undici computes it from the hint (its parser's onHeadersComplete):
    // timeout minus threshold, at most its max; 0 or less closes at once.
    // The Client that carried the request has stored it as its keep alive
    // timeout (the other Clients of the pool, if any, keep their own).
    const s = settings(agent);
    r.undici = s;
    const m = /timeout=(\d+)/.exec(r.keep_alive || '');
    hint = m ? parseInt(m[1], 10) * 1000 : null;
    reuseWindow = hint === null || !s.length ? null
      : Math.max(0, Math.min(hint - s[0].threshold_ms, s[0].max_ms));
    r.window_ms = reuseWindow;
    results.push(r);
  }
  const linger = config.linger || { ms: 0 };
  if ('window_plus' in linger) {
    if (reuseWindow === null) throw new Error('no reuse window learnt');
    await sleep(reuseWindow + linger.window_plus);
  } else {
    await sleep(linger.ms);
  }
  const s = settings(agent);
  process.stdout.write(JSON.stringify({
    node: process.versions.node,
    undici: process.versions.undici || null,
    threshold_ms: s.length ? s[0].threshold_ms : null,
    default_ms: s.length ? s[0].default_ms : null,
    clients_found: s.length,
    results, events, end: now(),
  }) + '\n');
  // exit now: destroying the agent would add disconnect events of our own
  process.exit(0);
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ fatal: describeError(err),
                                        stack: err.stack, results,
                                        events }) + '\n');
  process.exit(2);
});
