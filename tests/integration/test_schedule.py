"""Time in a job's life: send_at holds everything back until then, expires_at
ends what is not sent by then as `expired`, and a cancellation stops every
message still to go within about a second."""

import datetime
import time

from harness import (PREFIX, Expect, counter, post_job, seed, status_total, stream_fields,
                     wait_job, wait_until)


def population(n, prefix):
    subs = {f"{prefix}{i:05d}": {"phone": f"+4476{i:08d}", "name": f"Resident {i}"}
            for i in range(n)}
    return subs, {"area:T": list(subs)}


def rfc3339(unix_ms):
    t = datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def job(job_id, priority="normal", **extra):
    doc = {"id": job_id, "priority": priority, "audience": {"segments": ["area:T"]},
           "channels": ["sms"], "message": {"sms": "Notice for {{name}}: library closed."}}
    doc.update(extra)
    return doc


def events(r, job_id):
    return [f["event"] for _id, f in stream_fields(r, f"{PREFIX}events") if f.get("job") == job_id]


def test_send_at_holds_the_job_until_due(env):
    subs, segs = population(300, "s")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim()
    d = env.crierd()
    exp = Expect(subs, segs["area:T"], ["sms"])
    job_id = "sched-later-0001"

    send_at = int(time.time() * 1000) + 4000
    post_job(env.r, job(job_id, send_at=rfc3339(send_at)))
    wait_until(lambda: env.r.hget(f"{PREFIX}job:{job_id}", "state") == "scheduled", 10,
               what="the job to be scheduled")
    assert env.r.zscore(f"{PREFIX}scheduled", job_id) == send_at

    # Until send_at nothing reaches the simulator (watched, not slept through).
    while time.time() * 1000 < send_at - 50:
        d.check_alive()
        assert env.sim.endpoint_stats("twilio")["requests"] == 0, "sent before send_at"
        assert env.r.hget(f"{PREFIX}job:{job_id}", "state") == "scheduled"
        time.sleep(0.05)

    h = wait_job(env.r, job_id, [d], timeout=30)
    got = env.sim.recipients("twilio")
    assert set(got) == exp.addresses("sms") and all(v == 1 for v in got.values())
    first = min(e["t_ms"] for e in env.sim.log_all("twilio"))
    print(f"\nschedule: first message {first - send_at} ms after send_at")
    assert first >= send_at
    assert int(h["started_ms"]) >= send_at
    assert int(h["messages"]) == exp.total == status_total(h)
    assert env.r.zscore(f"{PREFIX}scheduled", job_id) is None
    ev = events(env.r, job_id)
    assert ev.index("scheduled") < ev.index("due") < ev.index("started") < ev.index("completed")


def test_expires_at_passing_mid_job(env):
    subs, segs = population(400, "e")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "300")
    d = env.crierd(providers={"twilio": {"max_inflight": 4}})
    job_id = "sched-expiring-0001"

    expires = int(time.time() * 1000) + 3000
    post_job(env.r, job(job_id, expires_at=rfc3339(expires)))
    h = wait_job(env.r, job_id, [d], state="expired", timeout=60)

    sent = counter(h, "sent") + counter(h, "delivered")
    expired = counter(h, "expired")
    print(f"\nschedule: {sent} sent before expiry, {expired} expired")
    assert sent > 0 and expired > 0
    assert sent + expired == int(h["messages"]) == status_total(h) == len(subs)
    assert counter(h, "failed") == 0
    log = env.sim.log_all("twilio")
    late = [e for e in log if e["t_ms"] >= expires + 20]
    assert not late, f"{len(late)} requests after expires_at, first {late[0]}"
    got = set(env.sim.recipients("twilio"))
    by_status = {}
    for _id, rc in stream_fields(env.r, f"{PREFIX}receipts"):
        by_status.setdefault(rc["status"], set()).add(subs[rc["sub"]]["phone"])
    assert by_status.get("expired") and not by_status["expired"] & got
    assert got == by_status.get("sent", set()) | by_status.get("delivered", set())
    assert "expired" in events(env.r, job_id)


def test_cancel_mid_job(env):
    subs, segs = population(3000, "c")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "50")
    d = env.crierd(providers={"twilio": {"max_inflight": 8}})
    job_id = "sched-cancel-0001"

    post_job(env.r, job(job_id))
    wait_until(lambda: d.check_alive() or env.sim.endpoint_stats("twilio")["accepted"] >= 200,
               30, what="the job to be sending")
    env.r.hset(f"{PREFIX}job:{job_id}", "state", "cancelling")
    cancel_ms = time.time() * 1000

    h = wait_job(env.r, job_id, [d], state="cancelled", timeout=30)
    log = env.sim.log_all("twilio")
    after = [e["t_ms"] - cancel_ms for e in log if e["t_ms"] > cancel_ms]
    print(f"\nschedule: {len(after)} requests reached the sim after the cancel, "
          f"last {max(after, default=0):.0f} ms after it")
    assert not [t for t in after if t > 1000], "requests kept coming more than 1 s after cancel"
    sent = counter(h, "sent") + counter(h, "delivered")
    cancelled = counter(h, "cancelled")
    assert cancelled > 0 and sent < len(subs)
    assert sent + cancelled == int(h["messages"]) == status_total(h) == len(subs)
    assert len(env.sim.recipients("twilio")) == sent
    assert env.sim.endpoint_stats("twilio")["duplicates"] == 0
    assert "cancelled" in events(env.r, job_id)
