"""wrk's summary, read the same way by the load tests and the benchmarks."""

import re

# wrk prints the run's length as 20.10s, 999.87ms, 1.50m, ...
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(text):
    """wrk's summary: requests completed, the seconds they took, requests/s,
    socket errors by kind and non-2xx/3xx responses ("ok" is false when wrk
    printed no summary)."""
    res = {"ok": False, "requests": 0, "seconds": 0.0, "rps": 0.0,
           "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", text, re.M)
    if m:
        res["requests"] = int(m.group(1))
        res["seconds"] = float(m.group(2)) * UNIT_SECONDS.get(m.group(3), 1.0)
        res["ok"] = True
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        for key, value in zip(("connect", "read", "write", "timeout"),
                              m.groups()):
            res[key] = int(value)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


def wrk_failures(res):
    """Socket errors of every kind plus non-2xx/3xx responses."""
    return sum(res[k] for k in ("connect", "read", "write", "timeout", "non2xx"))
