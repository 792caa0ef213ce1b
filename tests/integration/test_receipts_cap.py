"""The receipts stream keeps to receipts.maxlen: a job with more outcomes than
that leaves about maxlen of its receipts (the newest), one per resident, while
its counters still account for every message."""

from harness import PREFIX, post_job, seed, status_total, wait_job

MAXLEN = 100
N = 600


def test_receipts_stream_is_capped(env):
    subs = {f"c{i:04d}": {"name": f"R{i}", "phone": f"+4477009{i:05d}", "channels": "sms"}
            for i in range(N)}
    env.start_redis()
    # one list node per 10 entries, so approximate trimming stays close to maxlen
    env.r.config_set("stream-node-max-entries", "10")
    seed(env.r, subs, {"area:cap": list(subs)})
    env.start_sim()
    d = env.crierd(receipts={"maxlen": MAXLEN})
    post_job(env.r, {"id": "cap-1", "priority": "normal", "audience": {"segments": ["area:cap"]},
                     "channels": ["sms"], "message": {"sms": "Road closed tonight."}})
    h = wait_job(env.r, "cap-1", [d])
    assert status_total(h) == N, h
    n = env.r.xlen(f"{PREFIX}receipts")
    assert MAXLEN <= n <= MAXLEN + 10, f"{n} receipts kept for maxlen {MAXLEN}"
    kept = [f for _, f in env.r.xrange(f"{PREFIX}receipts")]
    assert all(f["job"] == "cap-1" and f["status"] == "sent" for f in kept), kept[:3]
    assert len({f["sub"] for f in kept}) == len(kept)
