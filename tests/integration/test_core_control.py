"""Control: the same httpd without mod_keepalive omits the Keep-Alive header
on a persistent HTTP/1.1 response whose request lacked the keep-alive token
(so the other tests measure the module, not core), and the generated config
really loads the module through conf.d/keepalive.load."""

import subprocess

import pytest

from tests.harness.assertions import assert_keepalive
from tests.harness.httpd import (APACHE_BIN, HttpdServer, KEEPALIVE_CONF,
                                 KEEPALIVE_LOAD)
from tests.harness.rawhttp import RawConnection, build_request
from tests.harness.servers import serve

DISTRO_PATH = "/usr/lib/apache2/modules/mod_keepalive.so"


@pytest.fixture(scope="module")
def core_server(mpm):
    yield from serve(HttpdServer(mpm, module_path=None,
                                 keepalive=("On", "5", "100"), name="core"))


@pytest.fixture(scope="module")
def module_server(mpm, module_path):
    yield from serve(HttpdServer(mpm, module_path,
                                 keepalive=("On", "5", "100"), name="module"))


def dump_modules(server):
    proc = subprocess.run(
        [APACHE_BIN, "-t", "-D", "DUMP_MODULES", "-f", str(server.conf_path),
         "-d", str(server.dir)], capture_output=True, text=True, timeout=30,
        env=server._env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_core_without_module_omits_keepalive_on_persistent_http11_response(
        core_server):
    req = build_request()
    with RawConnection("127.0.0.1", core_server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert not resp.has("Keep-Alive"), (
            "core httpd alone was expected to omit Keep-Alive here\n"
            + resp.describe(req))
        assert "close" not in resp.tokens("Connection"), resp.describe(req)
        # ... although the connection is persistent:
        again = c.request(req)
        assert again.status == 200, again.describe(req)
        assert not c.is_closed(0.2), "core closed the connection"


def test_module_adds_keepalive_that_core_omits(module_server):
    req = build_request()
    with RawConnection("127.0.0.1", module_server.port) as c:
        resp = c.request(req)
        assert resp.status == 200, resp.describe(req)
        assert_keepalive(resp, 5, 100, req)


def test_control_server_does_not_load_the_module(core_server):
    assert "keepalive_module" not in dump_modules(core_server)


def test_config_loads_module_through_distro_snippet(module_server,
                                                    module_path):
    conf = module_server.conf_path.read_text()
    snippet = KEEPALIVE_LOAD.read_text()
    # the snippet's own lines (comments included) are in the generated
    # config, with only the module path replaced by the one under test
    for line in snippet.splitlines():
        if line.strip() and "LoadModule" not in line:
            assert line in conf, "snippet line %r missing from %s" % (
                line, module_server.conf_path)
    assert DISTRO_PATH in snippet, snippet
    assert DISTRO_PATH not in conf, conf
    assert 'LoadModule keepalive_module "%s"' % module_path in conf, conf
    assert 'Include "%s"' % KEEPALIVE_CONF in conf, conf
    assert "keepalive_module (shared)" in dump_modules(module_server)
