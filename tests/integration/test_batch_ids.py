"""Batch streams of different priorities can hand out the same entry id (two
XADDs in the same millisecond): a bulk batch whose id equals that of an
urgent batch still being sent is worked on at once, not mistaken for the
urgent one and left pending until it is reclaimed."""

import time

from harness import PREFIX, counter, post_job, seed, wait_job, wait_until

# Far in the future, so that both streams' next automatic ids are <this>-1,
# <this>-2, ...: the first batches of the two jobs share their ids.
LAST_ID = "99999999999999-0"


def test_same_entry_id_in_two_priority_streams(env):
    env.start_redis()
    subs = {f"i{n}": {"email": f"i{n}@ids.test", "name": f"Resident {n}"} for n in range(4)}
    seed(env.r, subs, {"area:U": ["i0", "i1"], "area:B": ["i2", "i3"]})
    for prio in ("urgent", "bulk"):
        key = f"{PREFIX}batches:{prio}"
        env.r.xadd(key, {"placeholder": "1"}, id=LAST_ID)
        env.r.xdel(key, LAST_ID)  # the stream keeps its last id
    env.start_sim("--log-body-bytes", "64")
    env.sim.configure("sendgrid", latency_ms=3000)  # the urgent batch stays in hand a while
    # Reclaiming stuck work would hide the fault: far beyond the test's wait.
    d = env.crierd(fanout={"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 600000})

    post_job(env.r, {"id": "ids-urgent-0001", "priority": "urgent",
                     "audience": {"segments": ["area:U"]}, "channels": ["email"],
                     "message": {"subject": "Appeal", "text": "Hello {{name}}."}})
    wait_until(lambda: d.check_alive() or env.r.xlen(f"{PREFIX}batches:urgent") >= 1,
               30, 0.01, what="the urgent job's batch")
    t0 = time.monotonic()
    post_job(env.r, {"id": "ids-bulk-0001", "priority": "bulk",
                     "audience": {"segments": ["area:B"]}, "channels": ["email"],
                     "message": {"subject": "Newsletter", "text": "Hello {{name}}."}})
    urgent_ids = [i for i, _ in env.r.xrange(f"{PREFIX}batches:urgent")]
    wait_until(lambda: d.check_alive() or env.r.xlen(f"{PREFIX}batches:bulk") >= 1,
               30, 0.01, what="the bulk job's batch")
    bulk_ids = [i for i, _ in env.r.xrange(f"{PREFIX}batches:bulk")]
    assert set(urgent_ids) & set(bulk_ids), (urgent_ids, bulk_ids)  # the case under test

    h = wait_job(env.r, "ids-bulk-0001", [d], timeout=30)
    took = time.monotonic() - t0
    print(f"\nbatch-ids: bulk job with a clashing batch id completed in {took:.1f} s")
    assert counter(h, "sent") + counter(h, "delivered") == 2
    wait_job(env.r, "ids-urgent-0001", [d], timeout=30)
