"""A record that Redis cannot silently lose. Redis is SIGKILLed mid-broadcast
and restarted from its AOF, or restarted from a copy of its AOF taken half a
second earlier (acknowledged writes thrown away on purpose): the job either
completes with every message recorded once (counters, ledger bits, receipts)
or is not `completed`. With `redis.wait_replicas` 1 a replica confirms every
outcome; a replica that stops answering slows nothing to a halt and is shown in
/readyz, /metrics and the log."""

import os
import shutil
import signal
import time

import redis

from harness import (CHANNELS, ledger_bit, Expect, ENDPOINT, RedisServer, accepted_total, assert_reached,
                     counter, free_port, http_get, post_job, seed, start_replica, status_total,
                     stream_fields, wait_job, wait_until)

N = 20000
CH = ("email", "sms")
SIM_ARGS = ("--latency-ms", "4", "--jitter-ms", "2")
UNRECORDED = {"sendgrid": 48, "twilio": 32, "fcm": 32}
OVERRIDES = {
    "fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 5000},
    "providers": {name: {"max_inflight": 16, "max_unrecorded": UNRECORDED[name]}
                  for name in UNRECORDED},
}


def population(n, prefix):
    subs = {f"{prefix}{i:05d}": {"phone": f"+4478{i:08d}", "email": f"{prefix}{i}@mail.test",
                                 "name": f"Resident {i}"} for i in range(n)}
    return subs, {"area:BIG": list(subs)}


def job(job_id, channels=CH):
    return {"id": job_id, "priority": "high", "audience": {"segments": ["area:BIG"]},
            "channels": list(channels),
            "message": {"subject": "Water main burst", "text": "Hello {{name}}, boil water.",
                        "sms": "Boil water notice for {{name}}: call 101."}}


def ch_index(name):
    return CHANNELS.index(name)


def assert_recorded(env, job_id, exp, channels, h):
    """Every message of the job recorded exactly once: the counters, one
    receipt per (resident, channel), and the ledger bit of each."""
    assert int(h["messages"]) == exp.total, f"messages {h['messages']}, expected {exp.total}"
    assert status_total(h) == exp.total
    for ch in channels:
        ok = counter(h, f"sent:{ch}") + counter(h, f"delivered:{ch}")
        assert ok == exp.count(ch), f"{ch}: {ok} recorded, expected {exp.count(ch)}"
    receipts = [f for _id, f in stream_fields(env.r, "crier:receipts") if f.get("job") == job_id]
    seen = {}
    for f in receipts:
        key = (f["sub"], f["channel"])
        seen[key] = seen.get(key, 0) + 1
    twice = [k for k, n in seen.items() if n > 1]
    assert not twice, f"{len(twice)} messages with more than one receipt, e.g. {twice[:3]}"
    want = {(s, c) for s, c, _a in exp.messages}
    assert set(seen) == want, (f"receipts: {len(want - set(seen))} missing, "
                               f"{len(set(seen) - want)} unexpected")
    raw = redis.Redis(host="127.0.0.1", port=env.redis.port).get(
        f"crier:job:{job_id}:ledger") or b""
    bits = sum(bin(b).count("1") for b in raw)
    assert bits == exp.total, f"ledger has {bits} bits set, expected {exp.total}"
    for f in receipts:
        bit = ledger_bit(int(f["pos"]), ch_index(f["channel"]))
        assert raw[bit // 8] >> (7 - bit % 8) & 1, f"no ledger bit for receipt {f}"


def duplicates(sim, channels):
    stats = sim.stats()["endpoints"]
    return sum(stats[ENDPOINT[c]]["duplicates"] for c in channels)


def start(env):
    subs, segs = population(N, "d")
    env.start_redis()
    seed(env.r, subs, segs)
    env.redis.persist()
    env.start_sim(*SIM_ARGS)
    return subs, segs


def wait_progress(env, d, n, what):
    return wait_until(lambda: d.check_alive() or accepted_total(env.sim, CH) >= n,
                      90, 0.005, what=what)


def test_redis_sigkill_everysec_keeps_the_record(env):
    subs, segs = start(env)
    d = env.crierd(**OVERRIDES)
    exp = Expect(subs, segs["area:BIG"], CH)
    post_job(env.r, job("durable-kill-0001"))
    wait_progress(env, d, exp.total // 4, "a quarter of the job")
    env.redis.kill()
    time.sleep(0.5)  # the outage itself, not a synchronisation
    d.check_alive()
    env.redis.restart()

    assert ("redis settings: a single Redis without replicas, with appendonly yes and "
            "appendfsync everysec") in d.log_text()
    h = wait_job(env.r, "durable-kill-0001", [d], timeout=150)
    assert_reached(env.sim, exp, CH)
    assert_recorded(env, "durable-kill-0001", exp, CH, h)
    dups = duplicates(env.sim, CH)
    bound = sum(UNRECORDED[ENDPOINT[c]] for c in CH)
    print(f"\nsigkill: {dups} duplicates (bound {bound})")
    assert dups <= bound


def test_redis_restored_from_an_older_aof(env):
    """The AOF is copied while Redis runs, the job goes on for half a second,
    Redis is killed and started again from the copy: every write of that half
    second is gone although Redis had acknowledged it."""
    subs, segs = start(env)
    d = env.crierd(**OVERRIDES)
    exp = Expect(subs, segs["area:BIG"], CH)
    job_id = "durable-aof-0001"
    post_job(env.r, job(job_id))
    wait_progress(env, d, exp.total // 4, "a quarter of the job")

    aof = env.redis.dir / "appendonlydir"
    copy = env.dir / "aof-copy"
    sent_at_copy = accepted_total(env.sim, CH)  # before: the window covers the copying too
    shutil.copytree(aof, copy)
    time.sleep(0.5)  # the writes to throw away
    env.redis.kill()
    sent_in_window = accepted_total(env.sim, CH) - sent_at_copy
    shutil.rmtree(aof)
    shutil.copytree(copy, aof)
    env.redis.restart()
    assert env.r.hget(f"crier:job:{job_id}", "state") != "completed", "job ended before the copy"

    h = wait_job(env.r, job_id, [d], timeout=150)
    assert_reached(env.sim, exp, CH)
    assert_recorded(env, job_id, exp, CH, h)
    # crierd keeps the batches it acknowledged in the last seconds and writes
    # them again from memory, so the records Redis threw away are not sent
    # again: what a crash may repeat (max_unrecorded per provider) still holds.
    dups = duplicates(env.sim, CH)
    bound = sum(UNRECORDED[ENDPOINT[c]] for c in CH)
    print(f"\naof copy: {dups} duplicates (bound {bound}), {sent_in_window} messages sent in "
          f"the lost half second; repaired {h.get('repaired', 0)}")
    assert dups <= bound
    d.check_alive()


# ---- wait_replicas ------------------------------------------------------------



def metric(port, name):
    _status, text = http_get(port, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_wait_replicas_with_a_replica_that_stops(env):
    subs, segs = start(env)
    replica = start_replica(env, env.redis)
    port = free_port()
    d = env.crierd(**OVERRIDES, http={"listen": f"127.0.0.1:{port}"},
                   redis={"wait_replicas": 1, "wait_timeout_ms": 200})
    exp = Expect(subs, segs["area:BIG"], CH)
    assert "redis.wait_replicas is 1 but min-replicas-to-write is 0" in d.log_text()
    job_id = "durable-wait-0001"
    post_job(env.r, job(job_id))
    wait_progress(env, d, exp.total // 5, "a fifth of the job")
    # (a replica slow under load can miss a WAIT now and then: count from here)
    before = metric(port, "crier_redis_wait_short_total")

    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: d.check_alive()
                   or metric(port, "crier_redis_wait_short_total") > before,
                   30, 0.05, what="a WAIT shortfall to be counted")
        status, body = wait_until(
            lambda: ((r := http_get(port, "/readyz")) and "degraded" in r[1]
                     and metric(port, "crier_redis_wait_degraded") == 1 and r),
            30, 0.05, what="/readyz and /metrics to say degraded")
        assert status == 200 and "replicas acknowledged" in body, (status, body)
        # crierd goes on sending without the replica
        base = accepted_total(env.sim, CH)
        wait_progress(env, d, min(base + 2000, exp.total), "progress without the replica")
        assert "replicas acknowledged" in d.log_text()
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)

    wait_until(lambda: "degraded" not in http_get(port, "/readyz")[1], 60, 0.1,
               what="/readyz to say ready again once the replica answers")
    assert "replica in step again" in d.log_text()
    h = wait_job(env.r, job_id, [d], timeout=150)
    assert_reached(env.sim, exp, CH)
    assert_recorded(env, job_id, exp, CH, h)
    assert duplicates(env.sim, CH) == 0
    # the replica holds the record too
    rr = replica.client()
    wait_until(lambda: rr.hget(f"crier:job:{job_id}", "state") == "completed", 30,
               what="the replica to have the completed job")
    d.check_alive()


# ---- the acknowledgement's check, inside Redis ----------------------------------

def test_ack_refused_while_the_ledger_lacks_a_planned_bit(env):
    """Ten residents' ledger bits are there when crierd loads their batch (so
    it does not send to them) and gone before it acknowledges the batch, as if
    Redis had lost them with no reconnect to tell crierd: the acknowledging
    script call refuses, crierd sends those ten, and only then is the batch
    acknowledged and the job completed."""
    n, lost = 400, 10
    subs = {f"g{i:04d}": {"phone": f"+4479{i:08d}", "name": f"R {i}"} for i in range(n)}
    segs = {"area:BIG": list(subs)}
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "1500")
    port = free_port()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   fanout={"batch_size": 200, "max_batches": 8},
                   providers={"twilio": {"max_inflight": 200, "max_unrecorded": 400}})
    exp = Expect(subs, segs["area:BIG"], ["sms"])
    job_id = "durable-gap-0001"
    ledger = f"crier:job:{job_id}:ledger"
    for pos in range(lost):
        env.r.setbit(ledger, ledger_bit(pos, ch_index("sms")), 1)
    post_job(env.r, job(job_id, ["sms"]))
    # the first batch is loaded and its requests are at the simulator (which
    # answers 1.5 s later): its acknowledgement is still to come
    wait_until(lambda: d.check_alive() or env.sim.endpoint_stats("twilio")["requests"] > 0,
               30, 0.005, what="the first requests")
    for pos in range(lost):
        env.r.setbit(ledger, ledger_bit(pos, ch_index("sms")), 0)

    h = wait_job(env.r, job_id, [d], timeout=60)
    assert_reached(env.sim, exp, ["sms"])
    assert_recorded(env, job_id, exp, ["sms"], h)
    assert duplicates(env.sim, ["sms"]) == 0
    assert counter(h, "repaired") == lost
    assert metric(port, "crier_record_gaps_total") == lost
    assert "10 planned outcomes missing from the ledger at acknowledgement" in d.log_text()


# ---- the startup settings check ---------------------------------------------------

def test_settings_that_cannot_be_read_are_reported_not_refused(env):
    # CONFIG renamed away, as managed services do
    env.redis = RedisServer(env.dir, ["--rename-command", "CONFIG", ""]).start()
    env.r = env.redis.client()
    env.start_sim()
    d = env.crierd()
    wait_until(lambda: d.check_alive() or "could not be checked" in d.log_text(), 10, 0.02,
               what="the settings check's line")
    line = next(x for x in d.log_text().splitlines() if "could not be checked" in x)
    assert "redis settings: CONFIG GET refused" in line and "unknown command" in line, line
    # crierd works all the same
    subs = {f"c{i}": {"phone": f"+44790000{i:04d}"} for i in range(20)}
    seed(env.r, subs, {"area:BIG": list(subs)})
    post_job(env.r, job("durable-cfg-0001", ["sms"]))
    h = wait_job(env.r, "durable-cfg-0001", [d], timeout=30)
    assert int(h["messages"]) == 20
