"""A slow provider holds up only its own channel: with FCM answering after
3 s, the email and SMS of the same job are all sent long before its push
notifications."""

import time

import pytest

from harness import Expect, CHANNELS, ENDPOINT, post_job, seed, wait_job

N = 4000


def test_slow_push_does_not_hold_up_email_and_sms(env):
    subs = {f"w{i:05d}": {"name": f"Resident {i}", "email": f"w{i:05d}@slow.test",
                          "phone": f"+4472{i:08d}", "push_token": f"tok-w{i:05d}",
                          "push_platform": "fcm"} for i in range(N)}
    env.start_redis()
    seed(env.r, subs, {"area:SLOW": list(subs)})
    env.start_sim("--log-body-bytes", "64")
    env.sim.configure("fcm", latency_ms=3000)
    d = env.crierd(providers={"fcm": {"max_inflight": 500}})
    exp = Expect(subs, list(subs), CHANNELS)

    t0 = time.monotonic()
    post_job(env.r, {"id": "flow-slow-0001", "priority": "high",
                     "audience": {"segments": ["area:SLOW"]}, "channels": list(CHANNELS),
                     "message": {"subject": "Storm warning", "text": "Hello {{name}}.",
                                 "sms": "Storm warning, {{name}}.",
                                 "push": {"title": "Storm warning", "body": "Stay indoors"}}})
    done = {}
    while len(done) < 3:
        d.check_alive()
        eps = env.sim.stats()["endpoints"]
        for ch in CHANNELS:
            if ch not in done and eps[ENDPOINT[ch]]["recipients"] >= exp.count(ch):
                done[ch] = time.monotonic() - t0
        assert time.monotonic() - t0 < 90, f"not done after 90 s: {done}"
        time.sleep(0.05)
    wait_job(env.r, "flow-slow-0001", [d], timeout=30)
    print(f"\nflow-slow: email done after {done['email']:.1f} s, sms {done['sms']:.1f} s, "
          f"push {done['push']:.1f} s")
    assert max(done["email"], done["sms"]) <= 0.5 * done["push"], done
