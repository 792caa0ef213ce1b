"""Shared fan-out: two crierd processes in one consumer group split one job's
batches between them and every message goes out exactly once, also when a
batch takes longer to send than fanout.reclaim_idle_ms."""

import re

import pytest

from harness import (Expect, PREFIX, counter, post_job, seed, status_total, wait_job)

ACKED = re.compile(r"job (\S+) batch (\S+): \d+ outcomes recorded, batch acknowledged")


def population(n, prefix):
    subs = {f"{prefix}{i:05d}": {"phone": f"+4479{i:08d}", "name": f"Resident {i}"}
            for i in range(n)}
    return subs, {"area:SHARED": list(subs)}


def job(job_id, priority="normal"):
    return {"id": job_id, "priority": priority, "audience": {"segments": ["area:SHARED"]},
            "channels": ["sms"],
            "message": {"sms": "Council notice for {{name}}: bin collection moves to Friday."}}


def acked_batches(d, job_id):
    return {m.group(2) for m in ACKED.finditer(d.log_text()) if m.group(1) == job_id}


def check_once(env, h, exp):
    got = env.sim.recipients("twilio")
    want = exp.addresses("sms")
    missed = want - set(got)
    assert not missed, f"{len(missed)} never reached, e.g. {sorted(missed)[:5]}"
    twice = sorted(k for k, v in got.items() if v != 1)
    assert not twice, f"{len(twice)} sent more than once, e.g. {twice[:5]}"
    assert env.sim.endpoint_stats("twilio")["duplicates"] == 0
    assert int(h["messages"]) == exp.total == status_total(h)
    assert counter(h, "sent:sms") + counter(h, "delivered:sms") == len(want)
    receipts = {}
    for _id, rc in env.r.xrange(f"{PREFIX}receipts", count=exp.total + 10):
        receipts[rc["sub"]] = receipts.get(rc["sub"], 0) + 1
    assert receipts == {s: 1 for s, _c, _a in exp.messages}


def test_two_crierd_share_one_job(env):
    n = 20000
    job_id = "shared-notice-0001"
    subs, segs = population(n, "s")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "2", "--log-body-bytes", "64")
    over = {"log_level": "debug", "fanout": {"batch_size": 200, "max_batches": 4}}
    a = env.crierd("crierd-a", **over)
    b = env.crierd("crierd-b", **over)
    exp = Expect(subs, segs["area:SHARED"], ["sms"])

    post_job(env.r, job(job_id))
    h = wait_job(env.r, job_id, [a, b], timeout=90)

    # Both processes took batches; together they took each one once.
    took_a, took_b = acked_batches(a, job_id), acked_batches(b, job_id)
    print(f"\nshared: crierd-a acknowledged {len(took_a)} batches, crierd-b {len(took_b)}")
    assert took_a and took_b, f"crierd-a took {len(took_a)} batches, crierd-b {len(took_b)}"
    assert not took_a & took_b
    # Pages of up to 200 ids (the first one small, so the first messages leave at once).
    assert len(took_a) + len(took_b) == int(h["batches"]) >= n // 200
    names = {c["name"] for c in env.r.xinfo_consumers(f"{PREFIX}batches:normal", "crierd")}
    assert {"crierd-a", "crierd-b"} <= names
    check_once(env, h, exp)


def test_slow_batches_are_not_taken_from_a_live_crierd(env):
    # A batch here takes several seconds to send (slow provider, few requests in
    # flight), longer than reclaim_idle_ms: the crierd still working on it must
    # keep it, so the other one never sends it a second time.
    n = 240
    job_id = "shared-slow-0001"
    subs, segs = population(n, "w")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "400")
    over = {"fanout": {"batch_size": 40, "max_batches": 2, "reclaim_idle_ms": 3000},
            "retry": {"base_ms": 50, "max_ms": 1000},
            "providers": {"twilio": {"max_inflight": 4}}}
    a = env.crierd("crierd-a", **over)
    b = env.crierd("crierd-b", **over)
    exp = Expect(subs, segs["area:SHARED"], ["sms"])

    post_job(env.r, job(job_id))
    h = wait_job(env.r, job_id, [a, b], timeout=60)
    claims = [line for d in (a, b) for line in d.log_text().splitlines() if "claimed" in line]
    print(f"\nshared-slow: {env.sim.endpoint_stats('twilio')['duplicates']} duplicates; "
          f"claims: {claims}")
    check_once(env, h, exp)
