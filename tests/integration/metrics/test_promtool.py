"""Real tools on the keepalive-status endpoint: promtool finds nothing to
lint in its output, under every MPM, with several virtual hosts (one with a
name that needs escaping) and counters that have counted; the shipped
Prometheus rules pass "promtool check rules" and compute what they say
("promtool test rules")."""

from pathlib import Path

from tests.harness.metrics import CLOSE, STATUS_PATH, parse_exposition, vhosts_of
from tests.harness.prometheus import RULES, promtool
from tests.harness.rawhttp import RawConnection, build_request

RULES_TEST = Path(__file__).with_name("keepalive.rules.test.yml")


def test_promtool_finds_nothing_in_the_endpoints_output(server, scraper):
    for host in ("a.test", "b.test", "odd.test", "log.test"):
        with RawConnection("127.0.0.1", server.port) as c:
            c.request(build_request(host=host))
            c.request(build_request(host=host, headers=CLOSE))
    text = scraper.get(STATUS_PATH).body.decode()
    samples = parse_exposition(text)[0]
    hosts = {v.split(":")[0] for v in vhosts_of(samples)}
    assert {"a.test", "b.test", 'q"uote\\back.test', "log.test"} <= hosts, (
        "the virtual hosts that served requests expected:\n" + text)
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        "promtool check metrics (exit %d):\n%s%s" % (result.returncode, result.stdout, result.stderr))


def test_promtool_lints_what_it_should():
    """The check above can fail: a counter without _total is a finding."""
    result = promtool("check", "metrics", stdin="# HELP bad_counter A counter.\n# TYPE bad_counter counter\n"
                                                "bad_counter 1\n")
    assert result.returncode != 0 and "_total" in result.stdout + result.stderr, result


def test_shipped_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_shipped_rules_compute_what_they_say():
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
