"""Invalid mod_keepalive directive values fail the configuration test
(``apache2 -t``) with a message naming the directive and the value; valid
ones, in every context where each directive is allowed, pass it.

Configuration tests do not depend on the MPM: they run under one (event
when selected)."""

import re

import pytest

from tests.harness.servers import describe_configtest, run_configtest

VHOST = """\
<VirtualHost 127.0.0.1:@PORT@>
    ServerName v.test
%s
</VirtualHost>
"""


def value_pattern(text):
    return r"(?<![\w.%-])" + re.escape(text) + r"(?![\w.])"


# (id, config, directive, accepted spellings of the bad value in the message)
INVALID = [
    ("idle-timeout-not-a-number", "KeepAliveIdleTimeout abc",
     "KeepAliveIdleTimeout", ["abc"]),
    ("idle-timeout-negative", "KeepAliveIdleTimeout -5",
     "KeepAliveIdleTimeout", ["-5"]),
    ("idle-timeout-unknown-unit", "KeepAliveIdleTimeout 5x",
     "KeepAliveIdleTimeout", ["5x"]),
    # httpd's own duration parser reads a word starting with a unit letter
    # as "0 <unit>" ("soon" = 0 s, which would silently disable keep-alive;
    # core's KeepAliveTimeout accepts it): a number is required
    ("idle-timeout-word-without-number", "KeepAliveIdleTimeout soon",
     "KeepAliveIdleTimeout", ["soon"]),
    ("max-lifetime-word-without-number", "KeepAliveMaxLifetime hour",
     "KeepAliveMaxLifetime", ["hour"]),
    ("max-requests-negative", "KeepAliveMaxRequests -1",
     "KeepAliveMaxRequests", ["-1"]),
    ("max-requests-fraction", "KeepAliveMaxRequests 1.5",
     "KeepAliveMaxRequests", ["1.5"]),
    ("max-requests-in-location-not-a-number",
     "<Location /x>\n    KeepAliveMaxRequests many\n</Location>",
     "KeepAliveMaxRequests", ["many"]),
    ("header-unknown-mode", "KeepAliveHeader sometimes",
     "KeepAliveHeader", ["sometimes"]),
    ("header-unknown-mode-in-directory",
     '<Directory "@DOCROOT@">\n    KeepAliveHeader yes\n</Directory>',
     "KeepAliveHeader", ["yes"]),
    ("max-lifetime-not-a-number", "KeepAliveMaxLifetime forever",
     "KeepAliveMaxLifetime", ["forever"]),
    ("max-lifetime-negative", "KeepAliveMaxLifetime -1",
     "KeepAliveMaxLifetime", ["-1"]),
    ("lifetime-jitter-above-100", "KeepAliveMaxLifetimeJitter 150%",
     "KeepAliveMaxLifetimeJitter", ["150%"]),
    ("lifetime-jitter-not-a-number", "KeepAliveMaxLifetimeJitter some",
     "KeepAliveMaxLifetimeJitter", ["some"]),
    ("drain-spread-not-a-duration", "KeepAliveDrainSpread later",
     "KeepAliveDrainSpread", ["later"]),
    ("adaptive-queue-not-on-off", "KeepAliveAdaptiveQueue sometimes",
     "KeepAliveAdaptiveQueue", ["sometimes"]),
    ("advertised-above-idle-in-same-location",
     "<Location /x>\n    KeepAliveIdleTimeout 5\n"
     "    KeepAliveAdvertisedTimeout 10\n</Location>",
     "KeepAliveAdvertisedTimeout", ["10", "10s", "10000ms"]),
    ("advertised-above-idle-in-same-location-written-first",
     "<Location /x>\n    KeepAliveAdvertisedTimeout 10\n"
     "    KeepAliveIdleTimeout 5\n</Location>",
     "KeepAliveAdvertisedTimeout", ["10", "10s", "10000ms"]),
    ("advertised-above-core-keepalivetimeout-at-server-level",
     "KeepAliveAdvertisedTimeout 10",        # KeepAliveTimeout 5 (main)
     "KeepAliveAdvertisedTimeout", ["10", "10s", "10000ms"]),
    ("advertised-above-idle-timeout-at-server-level",
     "KeepAliveIdleTimeout 2\nKeepAliveAdvertisedTimeout 3",
     "KeepAliveAdvertisedTimeout", ["3", "3s", "3000ms"]),
    ("advertised-above-vhost-keepalivetimeout",
     VHOST % "    KeepAliveTimeout 2\n    KeepAliveAdvertisedTimeout 3",
     "KeepAliveAdvertisedTimeout", ["3", "3s", "3000ms"]),
    ("advertised-in-vhost-above-inherited-keepalivetimeout",
     VHOST % "    KeepAliveAdvertisedTimeout 10",
     "KeepAliveAdvertisedTimeout", ["10", "10s", "10000ms"]),
    ("advertised-not-a-duration", "KeepAliveAdvertisedTimeout soon",
     "KeepAliveAdvertisedTimeout", ["soon"]),
    ("disable-if-unparsable-expression", 'KeepAliveDisableIf "%{"',
     "KeepAliveDisableIf", ["%{"]),
    ("disable-if-unparsable-in-location",
     '<Location /x>\n    KeepAliveDisableIf "%{REQUEST_URI} =~"\n'
     '</Location>',
     "KeepAliveDisableIf", ["%{REQUEST_URI} =~"]),
    ("http10-unknown-value", "KeepAliveHTTP10 maybe",
     "KeepAliveHTTP10", ["maybe"]),
    ("metrics-per-vhost-unknown-value", "KeepAliveMetricsPerVhost yes",
     "KeepAliveMetricsPerVhost", ["yes"]),
    ("metrics-per-vhost-unknown-value-in-vhost",
     VHOST % "    KeepAliveMetricsPerVhost listed",
     "KeepAliveMetricsPerVhost", ["listed"]),
    ("metrics-max-vhosts-not-a-number", "KeepAliveMetricsMaxVhosts lots",
     "KeepAliveMetricsMaxVhosts", ["lots"]),
    ("metrics-max-vhosts-negative", "KeepAliveMetricsMaxVhosts -1",
     "KeepAliveMetricsMaxVhosts", ["-1"]),
    ("metrics-max-vhosts-too-many", "KeepAliveMetricsMaxVhosts 100001",
     "KeepAliveMetricsMaxVhosts", ["100001"]),
]


@pytest.mark.parametrize("config,directive,spellings",
                         [x[1:] for x in INVALID], ids=[x[0] for x in INVALID])
def test_invalid_value_fails_configtest_naming_directive_and_value(
        module_path, config, directive, spellings):
    rc, output, scrubbed, text = run_configtest(module_path, config)
    what = describe_configtest(rc, output, text)
    assert rc != 0, "configtest accepted an invalid value\n" + what
    assert "Invalid command" not in output, (
        "the module does not know the directive at all\n" + what)
    assert directive in scrubbed, (
        "the message does not name the directive %s\n%s" % (directive, what))
    if directive == "KeepAliveDisableIf":
        named = any(s in scrubbed for s in spellings)
    else:
        named = any(re.search(value_pattern(s), scrubbed) for s in spellings)
    assert named, ("the message does not name the bad value (%s)\n%s"
                   % (" or ".join(repr(s) for s in spellings), what))


def test_http10_directive_not_allowed_in_location(module_path):
    rc, output, scrubbed, text = run_configtest(
        module_path, "<Location /x>\n    KeepAliveHTTP10 Off\n</Location>")
    what = describe_configtest(rc, output, text)
    assert rc != 0, "KeepAliveHTTP10 was accepted in <Location>\n" + what
    assert "Invalid command" not in output, what
    assert "KeepAliveHTTP10" in scrubbed and "not allowed" in scrubbed, (
        "expected httpd's 'KeepAliveHTTP10 not allowed here'\n" + what)


def test_metrics_max_vhosts_not_allowed_in_a_virtual_host(module_path):
    """The number of counter blocks is the whole server's: httpd's own
    context message, naming the directive."""
    rc, output, scrubbed, text = run_configtest(
        module_path, VHOST % "    KeepAliveMetricsMaxVhosts 10")
    what = describe_configtest(rc, output, text)
    assert rc != 0, "KeepAliveMetricsMaxVhosts accepted in <VirtualHost>\n" + what
    assert "KeepAliveMetricsMaxVhosts cannot occur within <VirtualHost> section" in scrubbed, what


def test_metrics_per_vhost_not_allowed_in_location(module_path):
    rc, output, scrubbed, text = run_configtest(
        module_path, "<Location /x>\n    KeepAliveMetricsPerVhost Off\n</Location>")
    what = describe_configtest(rc, output, text)
    assert rc != 0, "KeepAliveMetricsPerVhost accepted in <Location>\n" + what
    assert "KeepAliveMetricsPerVhost" in scrubbed and "not allowed" in scrubbed, what


def test_http10_directive_not_allowed_in_directory(module_path):
    rc, output, scrubbed, text = run_configtest(
        module_path,
        '<Directory "@DOCROOT@">\n    KeepAliveHTTP10 Off\n</Directory>')
    what = describe_configtest(rc, output, text)
    assert rc != 0, "KeepAliveHTTP10 was accepted in <Directory>\n" + what
    assert "KeepAliveHTTP10" in scrubbed and "not allowed" in scrubbed, what


def test_adaptive_queue_is_for_the_main_server_only(module_path):
    rc, output, scrubbed, text = run_configtest(
        module_path, VHOST % "    KeepAliveAdaptiveQueue Off")
    what = describe_configtest(rc, output, text)
    assert rc != 0, "KeepAliveAdaptiveQueue was accepted in <VirtualHost>\n" + what
    assert "KeepAliveAdaptiveQueue" in scrubbed and "VirtualHost" in scrubbed, what


ALL_VALID = """\
KeepAliveHeader Always
KeepAliveIdleTimeout 20
KeepAliveAdvertisedTimeout 10
KeepAliveMaxRequests 0
KeepAliveMaxLifetime 1h
KeepAliveMaxLifetimeJitter 10%
KeepAliveDrainSpread auto
KeepAliveAdaptiveQueue Off
KeepAliveHTTP10 On
KeepAliveDisableIf "%{HTTP_USER_AGENT} =~ /BadBot/"
KeepAliveMetricsPerVhost Off
KeepAliveMetricsMaxVhosts 100000
<VirtualHost 127.0.0.1:@PORT@>
    ServerName v.test
    KeepAliveMetricsPerVhost On
    KeepAliveHeader OnRequest
    KeepAliveIdleTimeout 1500ms
    KeepAliveAdvertisedTimeout 1
    KeepAliveMaxRequests 50
    KeepAliveMaxLifetime 2mi
    KeepAliveMaxLifetimeJitter 0
    KeepAliveHTTP10 Off
    KeepAliveDisableIf "%{REQUEST_METHOD} == 'POST'"
    <Location /a>
        KeepAliveHeader Never
        KeepAliveIdleTimeout 3s
        KeepAliveAdvertisedTimeout 3
        KeepAliveMaxRequests 5
        KeepAliveMaxLifetime 30
        KeepAliveMaxLifetimeJitter 25
        KeepAliveDisableIf "%{REQUEST_URI} =~ m#^/dl/#"
    </Location>
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName w.test
    KeepAliveMetricsPerVhost off
    KeepAliveTimeout 8
    KeepAliveAdvertisedTimeout 8
    # above this vhost's own KeepAliveTimeout, but no idle timeout in the
    # same section: accepted, clamped at run time
    <Location /clamped>
        KeepAliveAdvertisedTimeout 30
    </Location>
</VirtualHost>
<Directory "@DOCROOT@/d">
    KeepAliveHeader OnRequest
    KeepAliveIdleTimeout 0
    KeepAliveMaxRequests 1
    KeepAliveDisableIf "-n %{ENV:foo}"
</Directory>
<Files "f.txt">
    KeepAliveHeader Never
    KeepAliveIdleTimeout 2
    KeepAliveMaxLifetime 1500ms
</Files>
<If "%{QUERY_STRING} == 'x'">
    KeepAliveHeader Never
    KeepAliveMaxRequests 3
</If>
<Location /b>
    KeepAliveIdleTimeout 5
    KeepAliveAdvertisedTimeout 5
</Location>
"""


def test_valid_values_in_every_allowed_context_pass_configtest(module_path):
    rc, output, scrubbed, text = run_configtest(module_path, ALL_VALID)
    assert rc == 0 and "Syntax OK" in output, describe_configtest(rc, output, text)


@pytest.mark.parametrize("mode", ["Always", "OnRequest", "Never", "always",
                                  "onrequest", "NEVER"])
def test_header_modes_are_accepted_in_any_case(module_path, mode):
    rc, output, scrubbed, text = run_configtest(module_path,
                                                "KeepAliveHeader %s" % mode)
    assert rc == 0, describe_configtest(rc, output, text)


@pytest.mark.parametrize("value", ["0", "5", "1500ms", "2s", "1mi", "1h"])
def test_duration_syntax_of_httpd_is_accepted(module_path, value):
    config = "KeepAliveMaxLifetime %s\n<Location /x>\n    " \
             "KeepAliveIdleTimeout %s\n</Location>" % (value, value)
    rc, output, scrubbed, text = run_configtest(module_path, config)
    assert rc == 0, describe_configtest(rc, output, text)
