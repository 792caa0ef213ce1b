"""A job ends when its time is up, not when its last waiting message would
have been due: a message parked for a resident's quiet hours is counted
`expired` when the job's expires_at passes and the job ends `expired` then; a
cancelled job's parked message ends `cancelled` at once; a scheduled job that
is cancelled is `cancelled` at once, not at its send_at."""

import datetime
import subprocess
import time

import pytest

import harness
from harness import PREFIX, binary, counter, post_job, seed, status_total, stream_fields, wait_until

FINAL = ("completed", "cancelled", "expired", "failed")


@pytest.fixture(scope="module")
def env():
    with harness.running_env("job-end") as e:
        yield e


def rfc3339(unix_ms):
    t = datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def quiet_now():
    """A quiet-hours window in UTC from two hours ago to two hours ahead."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=2), now + datetime.timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


def job(job_id, subscribers, **extra):
    doc = {"id": job_id, "priority": "normal", "audience": {"subscribers": subscribers},
           "channels": ["sms"], "message": {"sms": "Notice for {{name}}: road closed."}}
    doc.update(extra)
    return doc


def events(r, job_id):
    return [f["event"] for _id, f in stream_fields(r, f"{PREFIX}events") if f.get("job") == job_id]


def wait_final(env, job_id, timeout):
    def check():
        env.daemon.check_alive()
        h = env.r.hgetall(f"{PREFIX}job:{job_id}")
        return h if h.get("state") in FINAL else None
    try:
        return wait_until(check, timeout, 0.02, what=f"job {job_id} to end")
    except harness.HarnessError as e:
        raise harness.HarnessError(
            f"{e}; job hash now: {env.r.hgetall(f'{PREFIX}job:{job_id}')}") from None


def parked_members(r, job_id):
    return [m for m in r.zrange(f"{PREFIX}retry", 0, -1) if m.startswith(f"{job_id}|")]


def crierctl(env, *args):
    return subprocess.run([binary("crierctl"), "-p", str(env.redis.port), *args],
                          capture_output=True, text=True, timeout=30)


def test_parked_message_expires_with_its_job(env):
    r, jid = env.r, "end-quiet-expiry"
    subs = {"eq-quiet": {"name": "Quiet", "phone": "+447521000001", "quiet": quiet_now(),
                         "tz": "UTC"},
            "eq-awake": {"name": "Awake", "phone": "+447521000002"}}
    seed(r, subs)
    expires = int(time.time() * 1000) + 2000
    post_job(r, job(jid, list(subs), expires_at=rfc3339(expires)))
    wait_until(lambda: counter(r.hgetall(f"{PREFIX}job:{jid}"), "parked") == 1, 10,
               what="the quiet resident's message parked")
    assert len(parked_members(r, jid)) == 1
    h = wait_final(env, jid, timeout=(expires / 1000 - time.time()) + 5)
    ended = int(h["completed_ms"])
    print(f"\njob ended {ended - expires} ms after expires_at")
    assert h["state"] == "expired", h
    assert ended >= expires
    # Counters add up: the awake resident's SMS went, the parked one expired.
    assert counter(h, "sent") + counter(h, "delivered") == 1, h
    assert counter(h, "expired") == 1 and counter(h, "expired:sms") == 1, h
    assert int(h["messages"]) == status_total(h) == 2, h
    assert counter(h, "parked") == 0, h
    assert not parked_members(r, jid), "nothing of an expired job is left waiting"
    assert env.sim.recipients("twilio").get("+447521000001") is None
    assert events(r, jid)[-1] == "expired"


def test_parked_message_of_a_cancelled_job_ends_at_once(env):
    r, jid = env.r, "end-quiet-cancel"
    seed(r, {"ec-quiet": {"name": "Quiet", "phone": "+447521000011", "quiet": quiet_now(),
                          "tz": "UTC"}})
    post_job(r, job(jid, ["ec-quiet"]))
    wait_until(lambda: counter(r.hgetall(f"{PREFIX}job:{jid}"), "parked") == 1, 10,
               what="the message parked")
    res = crierctl(env, "cancel", jid)
    assert res.returncode == 0, res.stderr
    asked = time.time()
    h = wait_final(env, jid, timeout=5)
    print(f"\ncancelled {int((time.time() - asked) * 1000)} ms after crierctl cancel")
    assert h["state"] == "cancelled", h
    assert counter(h, "cancelled") == 1 and int(h["messages"]) == status_total(h) == 1, h
    assert counter(h, "parked") == 0 and not parked_members(r, jid)
    assert "cancelled" in events(r, jid)


def test_cancelling_a_scheduled_job_ends_it_at_once(env):
    r, jid = env.r, "end-scheduled-cancel"
    seed(r, {"es-1": {"name": "One", "phone": "+447521000021"}})
    send_at = int(time.time() * 1000) + 3600 * 1000
    post_job(r, job(jid, ["es-1"], send_at=rfc3339(send_at)))
    wait_until(lambda: r.hget(f"{PREFIX}job:{jid}", "state") == "scheduled", 10,
               what="job scheduled")
    res = crierctl(env, "cancel", jid)
    assert res.returncode == 0, res.stderr
    assert "cancelled" in res.stdout
    h = wait_final(env, jid, timeout=2)
    assert h["state"] == "cancelled", h
    assert int(h["messages"]) == 0 and status_total(h) == 0 and counter(h, "targeted") == 0, h
    assert r.zscore(f"{PREFIX}scheduled", jid) is None
    ev = events(r, jid)
    assert ev.count("cancelled") == 1 and ev[-1] == "cancelled", ev
    # crierd does not start it later either (the scheduler no longer holds it).
    again = crierctl(env, "cancel", jid)
    assert again.returncode == 1 and "already cancelled" in again.stderr


def test_scheduled_job_cancelled_by_hand_ends_at_once(env):
    """The contract also lets an integrator cancel by setting state to
    cancelling: crierd ends a scheduled job so cancelled within a second or
    so, not at its send_at."""
    r, jid = env.r, "end-scheduled-hset"
    seed(r, {"eh-1": {"name": "One", "phone": "+447521000031"}})
    send_at = int(time.time() * 1000) + 3600 * 1000
    post_job(r, job(jid, ["eh-1"], send_at=rfc3339(send_at)))
    wait_until(lambda: r.hget(f"{PREFIX}job:{jid}", "state") == "scheduled", 10,
               what="job scheduled")
    r.hset(f"{PREFIX}job:{jid}", "state", "cancelling")
    h = wait_final(env, jid, timeout=3)
    assert h["state"] == "cancelled", h
    assert int(h["messages"]) == 0 and status_total(h) == 0, h
    assert r.zscore(f"{PREFIX}scheduled", jid) is None
    assert events(r, jid)[-1] == "cancelled"
