"""pytest glue for the integration tests: the `env` fixture (a private
redis-server, crier-sim and crierd per test, always cleaned up), the logs of
every process attached to the report of a test that failed, and a test failed
when any process it started (crierd, crier-sim, crierctl) made a sanitizer
report, even one that did not change what the test saw."""

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

# Set before any process starts: every sanitized binary the tests run writes
# its reports here (and stops at the first), checked after each test.
SAN_DIR = Path(tempfile.mkdtemp(prefix="crier-san-"))
atexit.register(shutil.rmtree, SAN_DIR, True)
harness.sanitizer_env(SAN_DIR)


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Torn down after the test's own fixtures (its processes are stopped by
    then, so reports made at exit, such as leaks, are in): fails the test when
    any process made a report."""
    seen = {p.name for p in SAN_DIR.iterdir()}
    yield
    text = harness.sanitizer_reports(SAN_DIR, seen)
    if text:
        pytest.fail("a process started by this test made a sanitizer report:\n" + text,
                    pytrace=False)


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
