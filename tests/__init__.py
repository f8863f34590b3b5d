"""The project's Python test code, importable from the repository root as
the package ``tests`` (pytest.ini's pythonpath; ``python3 -m bench.NAME``
run from the root): the integration tests and the harness they share with
the benchmarks in bench/."""
