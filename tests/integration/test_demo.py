"""`make demo-up` / `make demo-down` (scripts/demo.sh up|down): the demo's
redis-server, crier-sim and crierd stay running after the command returns,
`crierctl send docs/examples/...` reaches that crierd and the job completes,
and down stops every process it started."""

import json
import os
import subprocess

from harness import REPO, build_dir, wait_until

EXAMPLES = REPO / "docs" / "examples"


def demo(mode, d, *extra):
    env = dict(os.environ, BUILD=str(build_dir()))
    env.pop("CRIER_REDIS_URL", None)
    return subprocess.run(["sh", str(REPO / "scripts" / "demo.sh"), mode, "--dir", str(d)]
                          + list(extra), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180)


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_demo_up_stays_running_and_down_stops_it(tmp_path):
    d = tmp_path / "demo"
    up = demo("up", d, "--subscribers", "400")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((d / "state.json").read_text())
        pids = {name: p["pid"] for name, p in state["processes"].items()}
        assert set(pids) == {"redis-server", "crier-sim", "crierd", "crier-audit"}
        assert not any(gone(p) for p in pids.values()), "a process ended with demo-up"
        port = state["redis_port"]
        assert f"config {state['config']}" in up.stdout
        assert f"127.0.0.1:{port}" in up.stdout and "docs/examples/appeal.json" in up.stdout
        assert json.loads((d / "crierd.json").read_text())["redis"]["port"] == port

        ctl = [str(build_dir() / "crierctl"), "-p", str(port)]
        sent = subprocess.run(ctl + ["send", "--wait", str(EXAMPLES / "appeal.json")],
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        status = subprocess.run(ctl + ["status", "--once", "appeal-demo-0001"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "completed" in status.stdout, status.stdout
        # crier-audit runs beside it: the job's messages reach the demo's SQLite file
        audit = [str(build_dir() / "crierctl"), "audit", "--config", state["audit_config"],
                 "--job", "appeal-demo-0001", "--csv"]
        wait_until(lambda: subprocess.run(audit, capture_output=True, text=True, timeout=60)
                   .stdout.count("\n") > 1, 30, 0.2, what="the job's rows in the audit database")

        again = demo("up", d)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = demo("down", d)
    assert down.returncode == 0, down.stdout + down.stderr
    wait_until(lambda: all(gone(p) for p in pids.values()), 30,
               what="every demo process to be gone")
    for name in pids:
        assert f"stopped {name}" in down.stdout, down.stdout
    assert not (d / "state.json").exists()
    assert "nothing to stop" in demo("down", d).stdout
