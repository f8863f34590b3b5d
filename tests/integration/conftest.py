"""pytest fixtures for the mod_keepalive integration tests.

Environment:
  MPMS=event,worker      restrict the MPMs (default: prefork,worker,event)
  KEEPALIVE_MODULE=path  the module to test (default: <repo>/build/mod_keepalive.so);
                         KEEPALIVE_MODULE=none runs core httpd alone (to check
                         the harness itself; the module's tests then fail)
  KEEP_HTTPD_DIRS=1      keep every generated server directory in /tmp
                         (directories of servers that failed are always kept)
"""

import pytest

from tests.harness import servers
from tests.harness.httpd import REPO_ROOT


def pytest_report_header(config):
    path = servers.module_path_setting()
    return ["mod_keepalive: %s" % (path or "none (core httpd only)"),
            "MPMs: %s" % ", ".join(servers.selected_mpms())]


@pytest.fixture(scope="session")
def module_path():
    """Path of the built mod_keepalive.so (fails the test if not built)."""
    path = servers.module_path_setting()
    if path is not None and not path.is_file():
        pytest.fail("mod_keepalive is not built: %s does not exist "
                    "(run `make` in %s, or set KEEPALIVE_MODULE)"
                    % (path, REPO_ROOT), pytrace=False)
    return path


@pytest.fixture(scope="module", params=servers.selected_mpms())
def mpm(request):
    """The MPM under test; module-scoped so that each test file starts one
    server per MPM and runs all its tests against it."""
    return request.param


@pytest.fixture(autouse=True)
def _check_error_logs_after_each_test():
    """Attribute crashed children and module errors to the test during
    which they were logged."""
    yield
    problems = servers.new_problems_of_running_servers()
    if problems:
        pytest.fail("error log shows a crashed child or a mod_keepalive "
                    "error during this test:\n" + "\n".join(problems),
                    pytrace=False)
