"""Crash safety of shared fan-out: two crierd processes send a 100,000-resident
three-channel job while one of them is SIGKILLed at random moments (and
restarted each time). Every expected (subscriber, channel) still reaches the
simulator, the only messages sent twice are those whose outcome was not yet
written at the kills, and the job's counters add up."""

import random

from harness import (CHANNELS, Expect, accepted_total, assert_job_counts, assert_reached,
                     make_population, post_job, seed, stream_fields, wait_job, wait_until)

N = 100000
JOB_ID = "crash-appeal-0001"
KILLS = 5
INFLIGHT = {"sendgrid": 16, "twilio": 16, "fcm": 16}
UNRECORDED = {"sendgrid": 48, "twilio": 32, "fcm": 32}
SIM_ARGS = ("--latency-ms", "2", "--log-body-bytes", "64")
OVERRIDES = {
    "fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 3000},
    "retry": {"max_attempts": 5, "base_ms": 50, "max_ms": 1000},
    "providers": {name: {"max_inflight": n, "max_unrecorded": UNRECORDED[name]}
                  for name, n in INFLIGHT.items()},
}


def job_doc():
    return {
        "id": JOB_ID, "priority": "high", "audience": {"segments": ["area:ALL"]},
        "channels": list(CHANNELS),
        "message": {"subject": "Road closure near you",
                    "text": "Hello {{name}}, the high street is closed tonight.",
                    "sms": "Road closure: high street closed tonight, {{name}}.",
                    "push": {"title": "Road closure", "body": "High street closed tonight"}},
    }


def test_sigkill_one_of_two_crierd_repeatedly(env):
    rng = random.Random(4242)
    subs, segs = make_population(N, rng, id_prefix="k", areas=("area:ALL",), overlap=0)
    env.start_redis()
    seed(env.r, subs, segs)
    exp = Expect(subs, segs["area:ALL"], CHANNELS)
    env.start_sim(*SIM_ARGS)
    victim = env.crierd("crierd-a", **OVERRIDES)
    other = env.crierd("crierd-b", **OVERRIDES)

    post_job(env.r, job_doc())
    kills = 0
    while kills < KILLS:
        # A random amount of progress, then SIGKILL at whatever moment that is.
        base = accepted_total(env.sim)
        step = rng.randint(3000, 9000)
        wait_until(lambda: other.check_alive() or victim.check_alive()
                   or accepted_total(env.sim) >= base + step,
                   60, 0.005, what=f"{step} more messages before kill {kills + 1}")
        assert env.r.hget(f"crier:job:{JOB_ID}", "state") != "completed", \
            f"the job completed after only {kills} kills; make it longer"
        victim.kill()
        kills += 1
        victim.start()

    h = wait_job(env.r, JOB_ID, [victim, other], timeout=180)

    dups = assert_reached(env.sim, exp)
    # Progress events: every 20 batches, in order, each with the counts so far.
    progress = [f for _id, f in stream_fields(env.r, "crier:events")
                if f.get("job") == JOB_ID and f["event"] == "progress"]
    done = [int(f["batches_done"]) for f in progress]
    assert done and done == sorted(done) and all(d % 20 == 0 for d in done), done
    assert all(int(f["targeted"]) <= N for f in progress)
    assert int(h["targeted"]) == N
    assert_job_counts(h, exp)
    victim.check_alive()
    other.check_alive()
    bound = kills * sum(UNRECORDED.values())
    print(f"\ncrash: {kills} kills, {dups} messages sent more than once "
          f"(bound {bound}), {exp.total} messages")
    # A message holds one of its provider's max_unrecorded slots from its
    # request until its outcome is in the ledger, so a kill can repeat at most
    # max_unrecorded per provider of the killed crierd.
    assert dups <= bound, f"{dups} duplicates; at most {bound} could have been unrecorded"
