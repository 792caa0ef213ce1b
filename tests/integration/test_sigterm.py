"""SIGTERM in the middle of a broadcast: crierd stops taking work, finishes or
hands back what is in flight and exits 0 within seconds; started again, it
completes the job without missing anyone and without resending more than what
could have been in flight."""

from harness import Expect, post_job, seed, status_total, wait_job, wait_until
from test_redis_restart import job, population

N = 10000
JOB_ID = "sigterm-appeal-0001"
INFLIGHT = 16
SIM_ARGS = ("--latency-ms", "4", "--jitter-ms", "2")
OVERRIDES = {"fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 5000},
             "providers": {"twilio": {"max_inflight": INFLIGHT}}}


def test_sigterm_mid_broadcast_then_restart(env):
    subs, segs = population(N, "t")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim(*SIM_ARGS)
    d = env.crierd(**OVERRIDES)
    exp = Expect(subs, segs["area:BIG"], ["sms"])

    post_job(env.r, job(JOB_ID))
    wait_until(lambda: d.check_alive() or env.sim.endpoint_stats("twilio")["accepted"] >= N // 5,
               60, 0.01, what="a fifth of the broadcast to be sent")

    rc = d.term(timeout=10)
    assert rc == 0, f"crierd exited with {rc} after SIGTERM"
    sent_before = env.sim.endpoint_stats("twilio")["accepted"]
    assert sent_before < N, "the broadcast finished before SIGTERM could interrupt it"
    assert env.r.hget(f"crier:job:{JOB_ID}", "state") != "completed"

    d2 = env.crierd(**OVERRIDES)  # same consumer name, same config
    h = wait_job(env.r, JOB_ID, [d2], timeout=120)
    got = env.sim.recipients("twilio")
    missed = exp.addresses("sms") - set(got)
    assert not missed, f"{len(missed)} subscribers never reached, e.g. {sorted(missed)[:5]}"
    assert set(got) == exp.addresses("sms")
    dups = env.sim.endpoint_stats("twilio")["duplicates"]
    assert dups <= INFLIGHT, f"{dups} messages sent twice; at most {INFLIGHT} were in flight"
    assert int(h["messages"]) == exp.total == status_total(h)
    assert d2.term(timeout=10) == 0
