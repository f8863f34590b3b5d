"""mod_status's /server-status and ?auto show the module's counters, the
same numbers as the keepalive-status endpoint."""

import re
from html import unescape as html_unescape


# -- mod_status -----------------------------------------------------------
def test_server_status_pages_show_the_same_numbers(server, scraper):
    # Hosts appear from their first counted request: a scrape first, so
    # that metrics.test is in the table and the scrape below alike.
    scraper.scrape()
    prom = scraper.scrape()
    total = prom.scope()
    auto = scraper.get("/server-status?auto")
    assert auto.status == 200, auto.describe()
    html = scraper.get("/server-status")
    assert html.status == 200, html.describe()

    fields = {}
    for line in auto.body.decode().splitlines():
        if line.startswith("KeepAliveMod"):
            key, _, value = line.partition(": ")
            assert key not in fields, "%s twice:\n%s" % (key, auto.body)
            fields[key] = value
    text = auto.body.decode()
    # The Prometheus scrape was counted (kept) before ?auto was rendered.
    want = {"KeepAliveModRequests": total["requests"] + 1,
            "KeepAliveModResponsesKeep": total["keep"] + 1,
            "KeepAliveModResponsesClose": total["close"],
            "KeepAliveModConnectionsClosed": total["count"]}
    for key, value in want.items():
        assert fields.get(key) == str(value), "%s: want %s\n%s\n%s" % (
            key, value, text, prom.text)
    reasons = [k[len("closed:"):] for k in total if k.startswith("closed:")]
    for reason in reasons:
        key = "KeepAliveModClosed-" + reason
        assert fields.get(key) == str(total["closed:" + reason]), (
            "%s\n%s\n%s" % (key, text, prom.text))
    mean = total["sum"] / total["count"] if total["count"] else 0.0
    assert fields.get("KeepAliveModRequestsPerConnection") == "%.2f" % mean, (
        text)

    page = html.body.decode()
    assert re.search(r"<h2>mod_keepalive</h2>", page), page
    section = page[page.index("<h2>mod_keepalive</h2>"):]
    m = re.search(r"(\d+) requests decided", section)
    assert m and int(m.group(1)) == total["requests"] + 2, section
    for reason in reasons:
        assert "<td>%s</td><td>%d</td>" % (
            reason, total["closed:" + reason]) in section, (reason, section)
    rows = re.findall(r"<tr><td>([^<]*)</td><td>(\d+)</td><td>(\d+)</td>"
                      r"<td>(\d+)</td></tr>", section)
    assert sorted(html_unescape(r[0]) for r in rows) == sorted(
        prom.vhosts()), (rows, sorted(prom.vhosts()), section)
