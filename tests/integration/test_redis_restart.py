"""Redis is killed with SIGKILL in the middle of a 20,000-subscriber broadcast
and restarted on the same port from its AOF a second later: crierd reconnects
by itself, the job completes, nobody is missed and the counters add up."""

import time

from harness import Expect, counter, post_job, seed, status_total, wait_job, wait_until

N = 20000
JOB_ID = "restart-appeal-0001"
# Slow enough providers that the broadcast is still going when Redis dies.
SIM_ARGS = ("--latency-ms", "4", "--jitter-ms", "2")
OVERRIDES = {"fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 5000},
             "providers": {"twilio": {"max_inflight": 16}}}


def population(n, prefix):
    subs = {f"{prefix}{i:05d}": {"phone": f"+4478{i:08d}", "name": f"Resident {i}"}
            for i in range(n)}
    return subs, {"area:BIG": list(subs)}


def job(job_id):
    return {"id": job_id, "priority": "urgent", "audience": {"segments": ["area:BIG"]},
            "channels": ["sms"],
            "message": {"sms": "Police appeal for {{name}}: missing person, call 101."}}


def test_redis_sigkill_and_restart_mid_broadcast(env):
    subs, segs = population(N, "m")
    env.start_redis()
    seed(env.r, subs, segs)
    env.redis.persist()  # the seeded audience is on disk before anything is killed
    env.start_sim(*SIM_ARGS)
    d = env.crierd(**OVERRIDES)
    exp = Expect(subs, segs["area:BIG"], ["sms"])

    post_job(env.r, job(JOB_ID))
    accepted = wait_until(
        lambda: d.check_alive() or (
            (a := env.sim.endpoint_stats("twilio")["accepted"]) >= N // 5 and a),
        60, 0.01, what="a fifth of the broadcast to be sent")
    assert accepted < N, "the broadcast finished before Redis could be killed"

    env.redis.kill()
    time.sleep(1.0)  # the outage itself, not a synchronisation
    d.check_alive()
    env.redis.restart()

    h = wait_job(env.r, JOB_ID, [d], timeout=120)
    got = env.sim.recipients("twilio")
    missed = exp.addresses("sms") - set(got)
    assert not missed, f"{len(missed)} subscribers never reached, e.g. {sorted(missed)[:5]}"
    assert set(got) == exp.addresses("sms")
    assert int(h["messages"]) == exp.total
    assert status_total(h) == int(h["messages"])
    assert counter(h, "failed") == 0
    d.check_alive()
