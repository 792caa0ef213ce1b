"""A job cancelled while its escalation step waits, against real
redis-server, crier-sim and crierd: `crierctl cancel` and the dashboard's
cancel make the waiting step due at once (its member of crier:escalate is
rescored to now), so the step runner ends the job `cancelled` without the
step being sent; and while steps wait, the runner's ordinary runs read no
job hash (only a sweep every few seconds does), seen with MONITOR."""

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

from harness import PREFIX, binary, free_port, job_hash, post_job, seed, stream_fields, wait_job, \
    wait_until

OPERATOR = "operator-token-0123456789abcdef"
STEP_S = 60


def appeal(job_id, segment):
    return {"id": job_id, "priority": "urgent", "channels": ["push"],
            "audience": {"segments": [segment]},
            "message": {"push": {"title": "Missing person", "body": "Have you seen ...?"},
                        "sms": "Police appeal: missing person. Call 101."},
            "escalate": [{"after_s": STEP_S, "to": ["sms"], "unless": "delivered"}]}


def residents(env, n, segment):
    subs = {f"{segment}-{i}": {"push_token": f"tok-{segment}-{i}", "push_platform": "fcm",
                               "phone": f"+4477004{i:05d}"} for i in range(n)}
    seed(env.r, subs, {segment: list(subs)})


def waiting_for_step(r, job_id):
    h = job_hash(r, job_id)
    return h.get("state") == "sending" and h.get("expanded") == "1" and \
        h.get("batches") == h.get("batches_done") and int(h.get("batches", 0)) > 0


def step_score(r, job_id):
    return r.zscore(f"{PREFIX}escalate", f"{job_id}|1")


def assert_ended_by_cancel(env, d, job_id):
    h = wait_job(env.r, job_id, [d], state="cancelled", timeout=STEP_S / 4)
    assert h["esc_left"] == "0" and h["esc_step"] == "0", h
    assert step_score(env.r, job_id) is None
    stopped = [e for _, e in stream_fields(env.r, f"{PREFIX}events")
               if e.get("job") == job_id and e.get("event") == "escalation_stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "cancelled", stopped
    assert env.sim.recipients("twilio") == {}


def test_crierctl_cancel_makes_the_step_due_now(env):
    env.start_redis()
    env.start_sim()
    d = env.crierd()
    residents(env, 20, "area:x")
    post_job(env.r, appeal("escc-ctl", "area:x"))
    wait_until(lambda: waiting_for_step(env.r, "escc-ctl"), 30, what="the push round")
    assert step_score(env.r, "escc-ctl") > time.time() * 1000 + (STEP_S - 20) * 1000

    # crierd stopped: what the cancel wrote is seen before any runner acts on it
    d.signal(signal.SIGSTOP)
    try:
        before_ms = time.time() * 1000
        res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "cancel",
                              "escc-ctl"], capture_output=True, timeout=30)
        assert res.returncode == 0, res
        score = step_score(env.r, "escc-ctl")
        assert score is not None and score <= time.time() * 1000, (score, before_ms)
        assert job_hash(env.r, "escc-ctl")["state"] == "cancelling"
    finally:
        d.signal(signal.SIGCONT)
    assert_ended_by_cancel(env, d, "escc-ctl")


def test_dashboard_cancel_makes_the_step_due_now(env):
    env.start_redis()
    env.start_sim()
    port = free_port()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   dashboard={"tokens": {"olly": {"token": OPERATOR, "role": "operator"}}})
    residents(env, 20, "area:y")
    post_job(env.r, appeal("escc-api", "area:y"))
    wait_until(lambda: waiting_for_step(env.r, "escc-api"), 30, what="the push round")
    base = f"http://127.0.0.1:{port}"
    req = urllib.request.Request(base + "/api/v1/jobs/escc-api/cancel", method="POST", data=b"")
    req.add_header("Authorization", f"Bearer {OPERATOR}")
    req.add_header("Origin", base)
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and json.loads(resp.read()) == {"result": "requested"}
    # due now, or already taken by the runner: no longer a minute away
    score = step_score(env.r, "escc-api")
    assert score is None or score <= time.time() * 1000, score
    assert_ended_by_cancel(env, d, "escc-api")


def escalate_runs(client, want, timeout=60):
    """Watches Redis with MONITOR until want runs of the escalation script
    were seen whole; returns, per run, the commands it made (its calls are
    consecutive: a script runs alone)."""
    esc = f"{PREFIX}escalate"
    runs, cur = [], None
    deadline = time.time() + timeout
    with client.monitor() as m:
        while len(runs) < want:
            assert time.time() < deadline, f"only {len(runs)} escalation runs seen"
            c = m.next_command()
            if c["client_type"] != "lua":
                continue
            words = c["command"].split(" ")
            if words[:2] == ["ZRANGEBYSCORE", esc]:
                cur = []
            if cur is None:
                continue
            cur.append(words)
            if words[:2] == ["ZRANGE", esc] and words[-1].upper() == "WITHSCORES":
                runs.append(cur)
                cur = None
    return runs


def test_waiting_steps_cost_no_reads_per_run(env):
    """Before, every run (4 a second) read TYPE and state of up to 256
    waiting steps' jobs; now only the sweep, every few seconds, does."""
    env.start_redis()
    env.start_sim()
    d = env.crierd()
    residents(env, 3, "area:z")
    jobs = [f"escc-w{i}" for i in range(10)]
    for j in jobs:
        post_job(env.r, appeal(j, "area:z"))
    wait_until(lambda: all(waiting_for_step(env.r, j) for j in jobs), 30, what="the push rounds")
    client = env.redis._client(env.redis.port, decode_responses=True, socket_timeout=10)
    runs = escalate_runs(client, 12)
    reading = [r for r in runs if any(w[0] in ("TYPE", "HGET", "HMGET") for w in r)]
    # 12 runs take about 3 s: at most one sweep among them
    assert len(reading) <= 2, [len(r) for r in runs]
    assert all(len(r) == 2 for r in runs if r not in reading), runs
    d.check_alive()
    # a job set cancelling by hand is still found, by the sweep
    env.r.hset(f"{PREFIX}job:{jobs[0]}", "state", "cancelling")
    wait_job(env.r, jobs[0], [d], state="cancelled", timeout=STEP_S / 4)
    assert step_score(env.r, jobs[1]) is not None
