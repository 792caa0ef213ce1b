"""The Prometheus rules and Grafana dashboard under contrib/: promtool accepts
the rules, and every crier_* series they and the dashboard query is one that
crierd's /metrics really writes."""

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from harness import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "crier-alerts.yml"
DASH = ROOT / "contrib" / "grafana" / "crier-dashboard.json"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_rules():
    res = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                         timeout=60)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()
    assert b"SUCCESS" in res.stdout


def queried_series():
    text = RULES.read_text()
    dash = json.loads(DASH.read_text())
    for p in dash["panels"]:
        for t in p["targets"]:
            text += "\n" + t["expr"]
    names = set(re.findall(r"\bcrier_[a-z_]+", text))
    # histogram parts are written with suffixes of the family
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_every_series_queried_is_exported(env):
    env.start_redis()
    env.start_sim()
    port = free_port()
    env.crierd(http={"listen": f"127.0.0.1:{port}"})
    families = set()

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()

    from harness import wait_until
    wait_until(lambda: "crier_fleet_nodes 1" in scrape(), 10, 0.1,
               what="the backlog gauges after the first heartbeat")
    for line in scrape().splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
    missing = queried_series() - families
    assert not missing, f"queried but not exported: {sorted(missing)}"
