"""The record script's two ways of setting ledger bits give the same record: a
batch's outcomes (positions close together) through the ledger's bytes, a
retry batch whose members lie far apart in the audience through BITFIELD.
Either way every resident has one receipt, one ledger bit, the counters add
up and crier:sms:last names the message."""

import datetime

from harness import (PREFIX, counter, post_job, seed, stream_fields, status_total, wait_job,
                     wait_until)

N = 6000
QUIET_EVERY = 100  # residents 0, 100, 200, ... wait out quiet hours: spread over the audience
JOB = "ledger-spread-0001"
SMS_BIT = 0x80 >> 1  # ledger slot 1, most significant bit first


def quiet_now():
    """A quiet-hours window in UTC from two hours ago to two hours ahead."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=2), now + datetime.timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_spread_retry_batch_and_close_batches_record_alike(env):
    env.start_redis()
    env.start_sim()
    r = env.r
    subs = {}
    for i in range(N):
        s = {"phone": f"+4477{i:08d}", "name": f"Resident {i}"}
        if i % QUIET_EVERY == 0:
            s.update(quiet=quiet_now(), tz="UTC")
        subs[f"L{i:05d}"] = s
    seed(r, subs, {"area:L": list(subs)})
    d = env.crierd(fanout={"batch_size": 500, "max_batches": 8, "reclaim_idle_ms": 60000})
    post_job(r, {"id": JOB, "priority": "normal", "audience": {"segments": ["area:L"]},
                 "channels": ["sms"], "message": {"sms": "Road closed at {{name}}'s end."}})
    quiet = N // QUIET_EVERY

    def parked():
        d.check_alive()
        return [m for m in r.zrange(f"{PREFIX}retry", 0, -1) if m.startswith(JOB + "|")]

    members = wait_until(lambda: len(parked()) == quiet and parked(), 60,
                         what="the quiet residents parked")
    positions = sorted(int(m.split("|")[1]) for m in members)
    assert positions[-1] - positions[0] > 4096, positions  # one retry batch spans them
    h = r.hgetall(f"{PREFIX}job:{JOB}")
    wait_until(lambda: counter(r.hgetall(f"{PREFIX}job:{JOB}"), "sent") == N - quiet, 60,
               what="everyone else sent")
    # Quiet hours over: every parked message is due now and claimed together.
    for m in members:
        sub = m.split("|")[3]
        r.hdel(f"{PREFIX}sub:{sub}", "quiet")
    r.zadd(f"{PREFIX}retry", {m: 0 for m in members}, xx=True)
    h = wait_job(r, JOB, [d], timeout=120)

    assert int(h["messages"]) == status_total(h) == N, h
    assert counter(h, "sent") + counter(h, "delivered") == N, h
    assert counter(h, "sent:sms") + counter(h, "delivered:sms") == N, h
    assert counter(h, "parked") == 0, h
    assert counter(h, "sms_segments") == N, h

    receipts = [f for _i, f in stream_fields(r, f"{PREFIX}receipts") if f.get("job") == JOB]
    assert len(receipts) == N
    by_sub = {f["sub"]: f for f in receipts}
    assert len(by_sub) == N, "one receipt per resident"
    for f in receipts:
        assert f["channel"] == "sms" and f["provider"] == "twilio", f
        assert f["status"] in ("sent", "delivered") and f["segments"] == "1", f
        assert f["attempt"] and f["code"] is not None and f["latency_us"], f
    ledger = r.execute_command("GET", f"{PREFIX}job:{JOB}:ledger")
    ledger = ledger.encode("latin-1") if isinstance(ledger, str) else ledger
    assert len(ledger) == N
    assert all(b == SMS_BIT for b in ledger), "exactly the SMS bit at every position"
    last = r.hgetall(f"{PREFIX}sms:last")
    for sub, f in by_sub.items():
        assert last[subs[sub]["phone"]] == f"{JOB}/{f['pos']}/{sub}"
    stats = r.info("commandstats")
    assert stats.get("cmdstat_bitfield", {}).get("calls", 0) >= 1, "the spread batch's way"
    assert stats.get("cmdstat_setrange", {}).get("calls", 0) >= 1, "the close batches' way"
