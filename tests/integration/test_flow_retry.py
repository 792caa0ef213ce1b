"""Retries as the provider sees them: retries left in Redis by a SIGKILLed
crierd are all carried out after the restart, permanent errors are requested
exactly once, and a 429's Retry-After is honoured to the millisecond."""

import urllib.parse

import pytest

from harness import (PREFIX, Expect, counter, post_job, seed, status_total, stream_fields,
                     wait_job, wait_until)

OVERRIDES = {"fanout": {"batch_size": 100, "max_batches": 8, "reclaim_idle_ms": 3000},
             "retry": {"max_attempts": 30, "base_ms": 100, "max_ms": 1000}}

# crier-sim's Twilio magic numbers and the error each one always gets.
MAGIC = {"+15005550001": "21211", "+15005550002": "21612", "+15005550003": "21408",
         "+15005550004": "21610", "+15005550009": "21614"}


def population(n, prefix):
    subs = {f"{prefix}{i:05d}": {"phone": f"+4477{i:08d}", "name": f"Resident {i}"}
            for i in range(n)}
    return subs, {"area:R": list(subs)}


def job(job_id):
    return {"id": job_id, "priority": "high", "audience": {"segments": ["area:R"]},
            "channels": ["sms"], "message": {"sms": "Flood warning for {{name}}: move valuables up."}}


def retry_members(r, job_id):
    return [m for m in r.zrange(f"{PREFIX}retry", 0, -1) if m.startswith(job_id + "|")]


def to_of(entry):
    return urllib.parse.parse_qs(entry["body"]).get("To", [""])[0]


def test_retries_pending_at_a_kill_are_carried_out_after_restart(env):
    n = 600
    job_id = "flow-kill-retry-0001"
    subs, segs = population(n, "k")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--rate-429", "0.7", "--retry-after", "1")
    d = env.crierd(**OVERRIDES)
    exp = Expect(subs, segs["area:R"], ["sms"])

    post_job(env.r, job(job_id))
    waiting = wait_until(lambda: d.check_alive() or len(retry_members(env.r, job_id)) >= 100
                         and len(retry_members(env.r, job_id)),
                         30, 0.01, what="retries to pile up in crier:retry")
    d.kill()
    parked_at_kill = set(retry_members(env.r, job_id))
    print(f"\nflow-retry: killed with {len(parked_at_kill)} retries pending "
          f"(saw {waiting})")
    assert parked_at_kill
    env.sim.configure("twilio", rate_429=0.0)

    d2 = env.crierd(**OVERRIDES)
    h = wait_job(env.r, job_id, [d2], timeout=60)
    got = env.sim.recipients("twilio")
    missed = exp.addresses("sms") - set(got)
    assert not missed, f"{len(missed)} never reached, e.g. {sorted(missed)[:5]}"
    # Every retry pending at the kill went out after it.
    parked_subs = {m.split("|")[3] for m in parked_at_kill}
    assert {subs[s]["phone"] for s in parked_subs} <= set(got)
    assert retry_members(env.r, job_id) == []
    assert counter(h, "parked") == 0
    assert counter(h, "failed") == 0
    assert int(h["messages"]) == exp.total == status_total(h)


def test_permanent_errors_are_never_retried(env):
    subs, segs = population(200, "p")
    for i, number in enumerate(MAGIC):
        subs[f"magic{i}"] = {"phone": number, "name": f"Magic {i}"}
        segs["area:R"].append(f"magic{i}")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim()
    d = env.crierd(**OVERRIDES)
    job_id = "flow-permanent-0001"

    post_job(env.r, job(job_id))
    h = wait_job(env.r, job_id, [d], timeout=30)
    requests = {}
    for e in env.sim.log_all("twilio"):
        requests[to_of(e)] = requests.get(to_of(e), 0) + 1
    for number, code in MAGIC.items():
        assert requests.get(number) == 1, f"{number} ({code}) requested {requests.get(number)} times"
    outcomes = {rc["sub"]: rc for _id, rc in stream_fields(env.r, f"{PREFIX}receipts")
                if rc["sub"].startswith("magic")}
    for i, (number, code) in enumerate(MAGIC.items()):
        rc = outcomes[f"magic{i}"]
        assert rc["status"] in ("failed", "suppressed"), rc
        assert rc["attempt"] == "1" and code in rc["code"], rc
    assert outcomes["magic0"]["status"] == "failed"  # 21211: invalid number
    assert retry_members(env.r, job_id) == []
    assert int(h["messages"]) == len(subs) == status_total(h)
    assert counter(h, "sent") + counter(h, "delivered") == 200


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(env, form):
    """Retry-After as delta-seconds and as an HTTP-date: no retry reaches the
    simulator before the time it allowed."""
    n = 300
    job_id = "flow-retry-after-0001"
    subs, segs = population(n, "a")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--rate-429", "0.3", "--retry-after", "2")
    if form == "http-date":
        env.sim.configure(retry_after_date=1)
    over = dict(OVERRIDES, retry={"max_attempts": 30, "base_ms": 50, "max_ms": 500})
    d = env.crierd(**over)
    exp = Expect(subs, segs["area:R"], ["sms"])

    post_job(env.r, job(job_id))
    h = wait_job(env.r, job_id, [d], timeout=60)
    assert set(env.sim.recipients("twilio")) == exp.addresses("sms")
    assert counter(h, "failed") == 0 and int(h["messages"]) == n

    by_to = {}
    for e in env.sim.log_all("twilio"):
        by_to.setdefault(to_of(e), []).append(e)
    gaps = []
    for to, entries in by_to.items():
        entries.sort(key=lambda e: e["seq"])
        for prev, nxt in zip(entries, entries[1:]):
            if prev["status"] == 429:
                gaps.append((nxt["t_ms"] - prev["t_ms"], to))
    assert gaps, "no 429 was retried"
    shortest = min(gaps)
    print(f"\nflow-retry ({form}): {len(gaps)} retries after a 429, shortest gap {shortest[0]} ms")
    assert shortest[0] >= 2000 - 1, f"retried {shortest[0]} ms after a 429 (Retry-After: 2)"
    assert env.sim.endpoint_stats("twilio")["duplicates"] == 0
