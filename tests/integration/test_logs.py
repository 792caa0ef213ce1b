"""crierd's log as an operator reads it: a job whose every message fails over
gives a bounded number of lines with a count instead of one line per message;
"log_format": "json" gives one JSON object per line; under systemd (stderr
is $JOURNAL_STREAM) every line starts with the syslog priority journald
reads."""

import json
import os
import re
import subprocess

from harness import (Expect, HarnessError, binary, crierd_config, free_port, post_job, seed,
                     wait_job, wait_until)

N = 300
JOB_ID = "logs-failover-0001"
MORE = re.compile(r"\(and (\d+) more like this in the last (\d+) s\)")


def failover_config(env, **extra):
    """SMS through a primary that refuses every connection (a closed port)
    and a working secondary: every message fails over once. The primary's
    breaker never opens, so each message tries it."""
    twilio = {"type": "twilio", "account_sid": "AC00000000000000000000000000000000",
              "auth_token": "test-token", "from": "+447700900000", "breaker_failures": 0,
              "connect_timeout_ms": 500}
    return dict(channels={"sms": ["dead", "twilio"]},
                retry={"max_attempts": 3, "base_ms": 50, "max_ms": 500},
                providers={"dead": dict(twilio, url=f"http://127.0.0.1:{free_port()}"),
                           "twilio": dict(twilio, url=env.sim.url)},
                **extra)


def run_failover_job(env, **cfg):
    subs = {f"l{i:04d}": {"phone": f"+4477009{i:05d}"} for i in range(N)}
    env.start_redis()
    seed(env.r, subs, {"area:LG": list(subs)})
    env.start_sim()
    d = env.crierd(**failover_config(env, **cfg))
    post_job(env.r, {"id": JOB_ID, "audience": {"segments": ["area:LG"]}, "channels": ["sms"],
                     "message": {"sms": "Boil your water before drinking it."}})
    h = wait_job(env.r, JOB_ID, [d], timeout=60)
    exp = Expect(subs, list(subs), ["sms"])
    assert int(h["sent"]) + int(h.get("delivered", 0)) == exp.total == N
    assert d.term() == 0
    return d.log_text()


def test_failover_of_every_message_is_folded_into_a_few_lines(env):
    log = run_failover_job(env)
    lines = [ln for ln in log.splitlines() if "trying 'twilio'" in ln]
    # A summary line stands for the events it counts (the last of them is
    # the message it shows); every other line for one event.
    counted = 0
    for ln in lines:
        m = MORE.search(ln)
        counted += int(m.group(1)) if m else 1
    # Every failover is accounted for.
    assert counted == N, f"{counted} failovers in the log for {N} messages:\n" + "\n".join(lines)
    # And they take a handful of lines, not one per message.
    assert len(lines) <= 4, f"{len(lines)} failover lines:\n" + "\n".join(lines)
    assert any(MORE.search(ln) for ln in lines)


def test_json_log_is_one_object_per_line(env):
    log = run_failover_job(env, log_format="json")
    objs = []
    for ln in log.splitlines():
        try:
            objs.append(json.loads(ln))
        except ValueError:
            raise AssertionError(f"not a JSON line: {ln!r}")
    assert objs, "no log lines"
    for o in objs:
        assert set(o) >= {"ts", "level", "msg", "pid"}, o
        assert o["level"] in ("error", "warn", "info", "debug")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"]), o["ts"]
    assert any("crierd ready" in o["msg"] for o in objs)
    fo = [o for o in objs if "trying 'twilio'" in o["msg"]]
    assert sum(o.get("repeated", 1) for o in fo) == N
    summary = [o for o in fo if "repeated" in o]
    assert summary and all(o["key"].startswith("failover dead ") and o["window_s"] >= 1
                           for o in summary)


def test_journal_priority_prefix_when_stderr_is_the_journal_stream(env, tmp_path):
    env.start_redis()
    cfg = crierd_config(env.redis.port, 9, log_level="debug")
    path = tmp_path / "crierd.json"
    path.write_text(json.dumps(cfg))
    log_path = tmp_path / "crierd.log"
    with open(log_path, "wb") as log:
        st = os.fstat(log.fileno())
        environ = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.Popen([binary("crierd"), "-c", str(path)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, env=environ)
    try:
        wait_until(lambda: "ready" in log_path.read_text(errors="replace")
                   or proc.poll() is not None, 30, what="crierd ready")
        proc.terminate()
        assert proc.wait(15) == 0
    except (HarnessError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
        raise
    lines = log_path.read_text().splitlines()
    assert lines
    for ln in lines:
        assert re.match(r"<[3467]>(error|warn |info |debug) ", ln), ln
    assert any(ln.startswith("<6>info ") and "crierd ready" in ln for ln in lines)
