"""A job id posted twice (back to back, and again after it completed) is sent
once: one set of messages, one set of receipts, a duplicate event for each
extra entry, and every intake entry acknowledged."""

import random

from harness import (CHANNELS, ENDPOINT, PREFIX, Expect, group_caught_up, make_population,
                     post_job, seed, status_total, stream_fields, wait_job, wait_until)

JOB_ID = "dup-appeal-0001"


def job():
    return {"id": JOB_ID, "priority": "urgent", "audience": {"segments": ["area:LE1"]},
            "channels": ["email", "sms", "push"],
            "message": {"subject": "Scam warning", "text": "Hello {{name}}, beware of calls.",
                        "sms": "Scam warning: never give your PIN.",
                        "push": {"title": "Scam warning", "body": "Never give your PIN."}}}


def test_same_job_id_is_sent_once(env):
    subs, segs = make_population(200, random.Random(7), areas=("area:LE1",))
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim()
    d = env.crierd()
    exp = Expect(subs, segs["area:LE1"], CHANNELS)
    jobs = f"{PREFIX}jobs"

    post_job(env.r, job())
    second = post_job(env.r, job())
    wait_job(env.r, JOB_ID, [d], timeout=60)
    wait_until(lambda: group_caught_up(env.r, jobs, second), 15, what="second entry handled")

    third = post_job(env.r, job())  # and once more after completion
    wait_until(lambda: group_caught_up(env.r, jobs, third), 15, what="third entry handled")

    def events(kind):
        return [f for _i, f in stream_fields(env.r, f"{PREFIX}events")
                if f.get("job") == JOB_ID and f.get("event") == kind]

    wait_until(lambda: len(events("duplicate")) >= 2, 10, what="two duplicate events")
    assert len(events("duplicate")) == 2
    assert len(events("accepted")) == 1

    h = env.r.hgetall(f"{PREFIX}job:{JOB_ID}")
    assert h["state"] == "completed"
    assert int(h["messages"]) == exp.total == status_total(h)
    assert env.r.xlen(f"{PREFIX}receipts") == exp.total
    stats = env.sim.stats()["endpoints"]
    for ch in CHANNELS:
        got = env.sim.recipients(ENDPOINT[ch])
        assert set(got) == exp.addresses(ch)
        assert set(got.values()) <= {1}
        assert stats[ENDPOINT[ch]]["duplicates"] == 0
    d.check_alive()
