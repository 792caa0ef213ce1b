"""`crierctl status` (and `top`) show progress as residents done out of
residents targeted: the share never goes back while the audience is still
being expanded (it is not shown until the number of residents is known),
messages are never shown beside residents as if they were the same thing, and
a scheduled job says when it is due instead of how long it has run."""

import calendar
import datetime
import re
import subprocess
import time

from harness import PREFIX, binary, post_job, seed, wait_job, wait_until

PCT = re.compile(r"\]\s+(\d+%|-)\s")
RESIDENTS = re.compile(r"~(\d+)/(\d+) residents done")


def ctl(env, *args):
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def progress(env, job_id):
    """(share in % or None when not shown, residents done, residents targeted,
    the progress line) from `status --once`."""
    res = ctl(env, "status", "--once", job_id)
    assert res.returncode == 0, res.stderr
    line = res.stdout.splitlines()[1]
    m = PCT.search(line)
    assert m, line
    pct = None if m.group(1) == "-" else int(m.group(1)[:-1])
    r = RESIDENTS.search(line)
    done, targeted = (int(r.group(1)), int(r.group(2))) if r else (None, None)
    return pct, done, targeted, line


# Snapshots of crier:job:<id> as an expansion goes: batches are cut faster
# than they are recorded, then expansion ends, then the rest is recorded.
# (targeted, batches, batches_done, expanded, sent)
SNAPSHOTS = [
    (1000, 10, 0, 0, 0),
    (1000, 10, 5, 0, 1400),     # batches 50% done, but more are being cut
    (5000, 50, 12, 0, 3300),    # 24% of the batches cut so far: the old bar fell back
    (9000, 90, 40, 0, 11000),
    (9000, 90, 41, 1, 11300),   # expanded: 9000 residents, 41/90 batches
    (9000, 90, 60, 1, 16500),
    (9000, 90, 90, 1, 24600),   # every batch done, a retry still parked
]


def test_share_never_goes_back_while_the_audience_expands(env):
    env.start_redis()
    key = f"{PREFIX}job:expanding-1"
    env.r.hset(key, mapping={"state": "sending", "priority": "normal",
                             "created_ms": int(time.time() * 1000) - 5000,
                             "started_ms": int(time.time() * 1000) - 4000})
    env.r.zadd(f"{PREFIX}jobs:recent", {"expanding-1": time.time() * 1000})
    shown = []
    for targeted, batches, done_b, expanded, sent in SNAPSHOTS:
        env.r.hset(key, mapping={"targeted": targeted, "batches": batches,
                                 "batches_done": done_b, "expanded": expanded, "sent": sent})
        pct, done, tgt, line = progress(env, "expanding-1")
        if not expanded:
            # the number of residents is not known yet: no share, and what
            # is shown is residents found so far, not messages beside them
            assert pct is None, line
            assert f"{targeted} residents found so far" in line, line
        else:
            assert pct is not None, line
            assert tgt == targeted and done <= tgt, line
            assert pct == int(100 * min(done_b / batches, 0.99)), line
            shown.append(pct)
        assert "messages so far" in line, line
    assert shown == sorted(shown), shown
    assert shown[-1] == 99, shown  # not 100% until the job is completed
    # top shows the same measure
    res = ctl(env, "top", "--once")
    assert res.returncode == 0, res.stderr
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("expanding-1"))
    assert "99%" in row and "~8910/9000 residents done" in row, row


def test_real_expansion_of_a_large_segment(env):
    """A real job over a segment cut into many small batches, sampled while it
    runs: the share shown only grows and residents done never exceed
    residents targeted."""
    n = 4000
    env.start_redis()
    subs = {f"p{i:05d}": {"email": f"p{i}@crier.test"} for i in range(n)}
    seed(env.r, subs, {"area:BIG": list(subs)})
    env.start_sim("--latency-ms", "2")
    d = env.crierd(fanout={"batch_size": 10, "max_batches": 2, "reclaim_idle_ms": 60000},
                   channels={"email": ["sendgrid"]})
    post_job(env.r, {"id": "big-1", "priority": "normal", "audience": {"segments": ["area:BIG"]},
                     "channels": ["email"], "message": {"subject": "Test", "text": "Hello."}})
    wait_until(lambda: env.r.exists(f"{PREFIX}job:big-1"), 30, what="the job to be accepted")
    samples = []
    while True:
        pct, done, tgt, line = progress(env, "big-1")
        samples.append((pct, done, tgt, line))
        if env.r.hget(f"{PREFIX}job:big-1", "state") == "completed":
            break
        d.check_alive()
        assert len(samples) < 20000, samples[-1]
    wait_job(env.r, "big-1", [d], timeout=60)
    samples.append(progress(env, "big-1"))
    shares = [p for p, _d, _t, _l in samples if p is not None]
    assert shares == sorted(shares), [s[3] for s in samples]
    assert shares and shares[-1] == 100
    for pct, done, tgt, line in samples:
        if done is not None:
            assert done <= tgt <= n, line
    final = ctl(env, "status", "--once", "big-1").stdout.splitlines()[1]
    assert f"{n} residents, {n} messages" in final, final


def test_scheduled_job_shows_when_it_is_due(env):
    env.start(sim_args=())
    send_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) \
        + datetime.timedelta(minutes=3, seconds=20)
    iso = send_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    seed(env.r, {"s1": {"email": "s1@crier.test"}}, {"area:S": ["s1"]})
    post_job(env.r, {"id": "sched-1", "priority": "normal", "audience": {"segments": ["area:S"]},
                     "channels": ["email"], "send_at": iso,
                     "message": {"subject": "Later", "text": "Later."}})
    wait_until(lambda: env.r.hget(f"{PREFIX}job:sched-1", "state") == "scheduled", 30,
               what="the job to be scheduled")
    res = ctl(env, "status", "--once", "sched-1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    m = re.search(r"due in (\d+)m(\d+)s \(at (\S+)\)", out)
    assert m, out
    assert m.group(3) == iso, out
    left = int(m.group(1)) * 60 + int(m.group(2))
    want = calendar.timegm(send_at.utctimetuple()) - time.time()
    # crierctl counts from the whole second it read the clock in, so it
    # may say up to one second more than is left when the test reads it
    assert -1 < want - left <= 30, (left, want, out)
    assert "elapsed" not in out, out
    # top says the same
    top = ctl(env, "top", "--once").stdout
    assert f"(at {iso})" in top, top
