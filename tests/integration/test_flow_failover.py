"""Circuit breaker and failover: the primary SMS provider (a second crier-sim,
provider "twilio-b") is killed for the middle ~10 s of a job; every message
still goes out, via the secondary while the primary is down, nothing is lost,
and the primary gets traffic again once it is back on the same port."""

import time

import pytest

from harness import (PREFIX, Sim, counter, kill_sim, post_job, restart_sim, seed,
                     stream_fields, wait_job, wait_until)

N = 2500
JOB_ID = "flow-failover-0001"
OUTAGE_S = 10


def test_primary_down_mid_job_fails_over_and_comes_back(env):
    subs = {f"f{i:05d}": {"phone": f"+4473{i:08d}", "name": f"Resident {i}"} for i in range(N)}
    env.start_redis()
    seed(env.r, subs, {"area:FO": list(subs)})
    secondary = env.start_sim("--latency-ms", "5")
    (env.dir / "primary").mkdir()
    primary = Sim(env.dir / "primary", ["--latency-ms", "5"]).start()
    try:
        twilio = {"type": "twilio", "account_sid": "AC00000000000000000000000000000000",
                  "auth_token": "test-token", "from": "+447700900000", "max_inflight": 8,
                  "rate": 100, "burst": 10, "timeout_ms": 2000, "connect_timeout_ms": 500,
                  "breaker_failures": 5, "breaker_open_ms": 1000}
        d = env.crierd(channels={"sms": ["twilio-b", "twilio"]},
                       retry={"max_attempts": 10, "base_ms": 50, "max_ms": 1000},
                       providers={"twilio-b": dict(twilio, url=primary.url),
                                  "twilio": dict(twilio, url=secondary.url)})

        post_job(env.r, {"id": JOB_ID, "priority": "high",
                         "audience": {"segments": ["area:FO"]}, "channels": ["sms"],
                         "message": {"sms": "Water supply interrupted, {{name}}."}})
        wait_until(lambda: d.check_alive() or primary.endpoint_stats("twilio")["accepted"] >= 300,
                   30, 0.01, what="the primary to be sending")
        kill_sim(primary)
        before = secondary.endpoint_stats("twilio")["accepted"]
        down_at = time.monotonic()
        # The outage lasts OUTAGE_S; the secondary must carry the job meanwhile.
        wait_until(lambda: d.check_alive() or secondary.endpoint_stats("twilio")["accepted"]
                   >= before + 100, OUTAGE_S, 0.05, what="the secondary to take over")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        during = secondary.endpoint_stats("twilio")["accepted"] - before
        assert env.r.hget(f"{PREFIX}job:{JOB_ID}", "state") != "completed", \
            "the job ended during the outage; make it longer"
        restart_sim(primary)
        back_ms = time.time() * 1000

        h = wait_job(env.r, JOB_ID, [d], timeout=90)
        after = primary.endpoint_stats("twilio")["accepted"]
        print(f"\nflow-failover: secondary sent {during} during the {OUTAGE_S} s outage, "
              f"primary {after} after its restart; the job completed "
              f"{int(h['completed_ms']) - back_ms:.0f} ms after the primary was back")
        assert counter(h, "failed") == 0
        assert counter(h, "sent") + counter(h, "delivered") == N == int(h["messages"])
        ok = [rc for _id, rc in stream_fields(env.r, f"{PREFIX}receipts")
              if rc["status"] in ("sent", "delivered")]
        assert {rc["sub"] for rc in ok} == set(subs)
        via_secondary = {subs[rc["sub"]]["phone"] for rc in ok if rc["provider"] == "twilio"}
        assert set(secondary.recipients("twilio")) == via_secondary
        assert after > 0, "the primary got no traffic after it came back"
    finally:
        primary.stop()
