"""wrk's summary, read the same way by the load tests and the benchmarks."""

import re


def parse_wrk(text):
    """wrk's summary: requests completed, requests/s, socket errors by kind and
    non-2xx/3xx responses ("ok" is false when wrk printed no summary)."""
    res = {"ok": False, "requests": 0, "rps": 0.0, "connect": 0, "read": 0,
           "write": 0, "timeout": 0, "non2xx": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", text, re.M)
    if m:
        res["requests"] = int(m.group(1))
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
