"""The server and the scraper of the metrics tests: one server per test file
and MPM, scraped over one persistent connection (tests/harness/metrics.py
explains why that makes the counter deltas exact)."""

import pytest

from tests.harness.metrics import Scraper, metrics_server
from tests.harness.servers import serve


@pytest.fixture(scope="module")
def server(mpm, module_path):
    yield from serve(metrics_server(mpm, module_path))


@pytest.fixture(scope="module")
def scraper(server):
    s = Scraper(server.port)
    yield s
    s.close()
