"""pytest glue for the integration tests: the `env` fixture (a private
redis-server, crier-sim and crierd per test, always cleaned up) and the logs of
every process attached to the report of a test that failed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    env = getattr(item, "funcargs", {}).get("env")
    if rep.failed and isinstance(env, harness.Env):
        for title, text in env.logs():
            rep.sections.append((title, text))


@pytest.fixture
def env(request):
    e = harness.Env(label=request.node.name[:40])
    try:
        yield e
    finally:
        e.close()
