"""Priorities: an urgent 1,000-resident appeal posted while a 200,000-resident
bulk newsletter is sending completes before the newsletter, on the same
channel and provider. The time from its XADD to its first message at the
simulator is printed (a figure, not an assertion). Its audience is one segment,
so its first batch is the expander's small first page."""

import re

from harness import (PREFIX, Expect, counter, post_job, seed, status_total, wait_job,
                     wait_until)

N_BULK = 200000
N_URGENT = 1000
BULK_ID = "prio-newsletter-0001"
URGENT_ID = "prio-appeal-0001"


def seed_fast(r, prefix, phone_prefix, n, segment):
    ids = [f"{prefix}{i:06d}" for i in range(n)]
    pipe = r.pipeline(transaction=False)
    for i, sid in enumerate(ids):
        pipe.hset(f"{PREFIX}sub:{sid}", mapping={"phone": f"{phone_prefix}{i:06d}"})
        if i % 5000 == 4999:
            pipe.execute()
    for i in range(0, n, 5000):
        pipe.sadd(f"{PREFIX}seg:{segment}", *ids[i:i + 5000])
    pipe.execute()
    return {sid: {"phone": f"{phone_prefix}{i:06d}"} for i, sid in enumerate(ids)}


def first_seq_after(sim):
    """Every request logged so far has a seq at most this."""
    return sum(e["requests"] for e in sim.stats()["endpoints"].values())


def test_urgent_job_overtakes_bulk_job(env):
    env.start_redis()
    bulk_subs = seed_fast(env.r, "b", "+44780", N_BULK, "interest:all")
    urgent_subs = seed_fast(env.r, "u", "+44790", N_URGENT, "area:LE1")
    env.start_sim("--latency-ms", "1", "--log-body-bytes", "64")
    d = env.crierd(log_level="debug")

    post_job(env.r, {"id": BULK_ID, "priority": "bulk",
                     "audience": {"segments": ["interest:all"]}, "channels": ["sms"],
                     "message": {"sms": "Council newsletter: new opening hours."}})
    wait_until(lambda: d.check_alive() or env.sim.endpoint_stats("twilio")["accepted"] >= 5000,
               60, 0.01, what="the bulk job to be sending")

    seq0 = first_seq_after(env.sim)
    entry = post_job(env.r, {"id": URGENT_ID, "priority": "urgent",
                             "audience": {"segments": ["area:LE1"]}, "channels": ["sms"],
                             "message": {"sms": "Police appeal: missing person, call 101."}})
    xadd_ms = int(entry.split("-")[0])
    h = wait_job(env.r, URGENT_ID, [d], timeout=60)
    bulk = env.r.hgetall(f"{PREFIX}job:{BULK_ID}")
    bulk_sent = counter(bulk, "sent")
    assert bulk.get("state") == "sending", f"bulk job is {bulk.get('state')}"
    assert bulk_sent < N_BULK

    exp = Expect(urgent_subs, list(urgent_subs), ["sms"])
    assert int(h["messages"]) == exp.total == status_total(h) == N_URGENT
    assert counter(h, "sent") + counter(h, "delivered") == N_URGENT

    # The urgent job's messages in the simulator's log, read from just before its XADD.
    want = exp.addresses("sms")
    times, since = {}, seq0
    while len(times) < len(want):
        page = env.sim.log("twilio", since=since)
        if not page["entries"]:
            break
        for e in page["entries"]:
            for rcp in e["recipients"]:
                if rcp in want and e["status"] < 300:
                    times.setdefault(rcp, e["t_ms"])
        since = page["next"]
    assert set(times) == want, f"{len(want - set(times))} urgent recipients not in the sim log"
    first, last = min(times.values()), max(times.values())
    print(f"\npriority: urgent first message after {first - xadd_ms} ms, last after "
          f"{last - xadd_ms} ms; bulk had {bulk_sent} of {N_BULK} sent when the urgent "
          f"job completed")

    # Batches in the order the expander wrote them: a small first page (SSCAN COUNT 32,
    # which Redis takes as a hint), then full ones (COUNT 200).
    found = re.findall(rf"job {URGENT_ID} batch (\d+)-(\d+): (\d+) subscribers", d.log_text())
    sizes = [int(n) for _ms, _seq, n in sorted(found, key=lambda t: (int(t[0]), int(t[1])))]
    assert sum(sizes) == N_URGENT, sizes
    assert sizes[0] < 64 and max(sizes) > 150, sizes
    assert not set(env.sim.recipients("twilio")) - want - {s["phone"] for s in
                                                            bulk_subs.values()}
