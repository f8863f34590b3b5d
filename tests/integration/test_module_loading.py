"""How httpd sees the loaded module: <IfModule> matches it under both of its
names (the source file name mod_keepalive.c, as for every module written in
C, and the module identifier keepalive_module), httpd lists it among its
modules, and httpd refuses to start when another module holds the
HTTP_HEADER output filter the module acts through, whichever was loaded
first."""

import os
import shutil
import subprocess

import pytest

from tests.harness.assertions import assert_keepalive
from tests.harness.httpd import HttpdServer
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import (describe_configtest, run_configtest,
                                   serve)

# Each name gets a <Location> of its own whose KeepAliveMaxRequests says
# which block httpd took: the matching block's value (3 or 4), the negated
# block's (7 or 8), or core's MaxKeepAliveRequests 100 if it took neither.
IFMODULE_CONFIG = """\
<IfModule mod_keepalive.c>
    <Location /by-source-name>
        KeepAliveMaxRequests 3
    </Location>
</IfModule>
<IfModule !mod_keepalive.c>
    <Location /by-source-name>
        KeepAliveMaxRequests 7
    </Location>
</IfModule>
<IfModule keepalive_module>
    <Location /by-identifier>
        KeepAliveMaxRequests 4
    </Location>
</IfModule>
<IfModule !keepalive_module>
    <Location /by-identifier>
        KeepAliveMaxRequests 8
    </Location>
</IfModule>
"""
IFMODULE_FILES = {"htdocs/by-source-name/index.html": b"hello\n",
                  "htdocs/by-identifier/index.html": b"hello\n"}


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "100"),
                                 extra_config=IFMODULE_CONFIG,
                                 files=IFMODULE_FILES, name="ifmodule"))


@pytest.mark.parametrize("name,path,max_", [
    ("mod_keepalive.c", "/by-source-name/", 3),
    ("keepalive_module", "/by-identifier/", 4),
], ids=["source-file-name", "module-identifier"])
def test_ifmodule_matches_the_module_and_skips_its_negation(server, name,
                                                            path, max_):
    req = build_request(path=path)
    with RawConnection("127.0.0.1", server.port) as c:
        resp = c.request(req)
    assert resp.status == 200, resp.describe(req)
    values = resp.get_all("Keep-Alive")
    taken = {"timeout=5, max=%d" % max_: "<IfModule %s> only" % name,
             "timeout=5, max=%d" % (max_ + 4): "<IfModule !%s>" % name,
             "timeout=5, max=100": "neither block"}
    assert values == ["timeout=5, max=%d" % max_], (
        "httpd took %s for the loaded mod_keepalive (expected the content "
        "of <IfModule %s> and not that of <IfModule !%s>)\n%s"
        % (taken.get(values[0] if values else "", "an unexpected value"),
           name, name, resp.describe(req)))
    assert_keepalive(resp, 5, max_, req)


def test_dump_modules_lists_the_module(module_path):
    rc, output, _, text = run_configtest(module_path, "",
                                         defines=["DUMP_MODULES"])
    assert rc == 0, describe_configtest(rc, output, text)
    assert "keepalive_module (shared)" in [l.strip()
                                           for l in output.splitlines()], (
        describe_configtest(rc, output, text))


# -- another module holding HTTP_HEADER ----------------------------------------
# It registers a filter of its own under the name HTTP_HEADER, as
# mod_keepalive does: whichever registers last holds the name.
HEADER_TAKER_C = r"""
#include "httpd.h"
#include "http_config.h"
#include "util_filter.h"

static apr_status_t pass_on(ap_filter_t *f, apr_bucket_brigade *bb)
{
    return ap_pass_brigade(f->next, bb);
}

static void register_hooks(apr_pool_t *p)
{
    ap_register_output_filter("HTTP_HEADER", pass_on, NULL,
                              AP_FTYPE_PROTOCOL);
}

module AP_MODULE_DECLARE_DATA header_taker_module = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, register_hooks
};
"""


@pytest.fixture(scope="session")
def header_taker_so(tmp_path_factory):
    """mod_header_taker.so, built with apxs in a temporary directory (the
    apxs of the httpd under test when APXS names it, as make test-compat
    does)."""
    apxs = os.environ.get("APXS") or shutil.which("apxs") or shutil.which("apxs2")
    if apxs is None:
        pytest.skip("apxs not found (Debian package apache2-dev): cannot "
                    "build the module that takes HTTP_HEADER")
    build = tmp_path_factory.mktemp("header-taker")
    (build / "mod_header_taker.c").write_text(HEADER_TAKER_C)
    proc = subprocess.run([apxs, "-c", "mod_header_taker.c"], cwd=build,
                          capture_output=True, text=True, timeout=120)
    so = build / ".libs" / "mod_header_taker.so"
    assert proc.returncode == 0 and so.is_file(), (
        "apxs -c failed (exit %s):\n%s%s"
        % (proc.returncode, proc.stdout, proc.stderr))
    # httpd loads modules as root, but keep it readable for any user.
    for path in (build, build / ".libs", so):
        path.chmod(0o755)
    return so


@pytest.mark.parametrize("taker_first,problem", [
    (False, "a module loaded after mod_keepalive has taken over the "
            "HTTP_HEADER filter"),
    (True, "a module loaded before mod_keepalive had already taken over the "
           "HTTP_HEADER filter"),
], ids=["taker-loaded-after", "taker-loaded-before"])
def test_configtest_fails_when_another_module_holds_http_header(
        module_path, header_taker_so, taker_first, problem):
    # extra_modules are loaded before mod_keepalive, extra_config after it.
    if taker_first:
        config, modules = "", [("header_taker", header_taker_so)]
    else:
        config = 'LoadModule header_taker_module "%s"\n' % header_taker_so
        modules = []
    rc, output, _, text = run_configtest(module_path, config,
                                         extra_modules=modules)
    what = describe_configtest(rc, output, text)
    assert rc != 0, "apache2 -t accepted the configuration\n" + what
    assert "mod_keepalive: " + problem in output, what
