"""`crierctl report` counts the outcomes providers report through webhooks in
the right segment: crier-sim plays Twilio and calls crierd's /hooks/twilio back
(delivered, or undelivered for numbers ending in 99); those receipts name the
message by job, audience position and channel only. Each segment's figures must
add up to the job's counters, also when crierd's own receipts have been trimmed
from the stream (the subscriber is then found in crier:sms:last)."""

import csv
import io
import subprocess

from harness import (PREFIX, binary, counter, free_port, post_job, seed, stream_fields,
                     wait_job, wait_until)

JOB_ID = "report-hooks-1"
SEGS = ("area:A", "area:B")


def ctl(env, *args):
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def report(env):
    res = ctl(env, "report", JOB_ID)
    assert res.returncode == 0, res.stderr
    return {r["segment"]: r for r in csv.DictReader(io.StringIO(res.stdout))}, res.stderr


def test_report_counts_webhook_receipts_per_segment(env):
    n = 30
    subs = {f"w{i:03d}": {"phone": f"+4474009{i:05d}" if i % 7 else f"+44740090{i:03d}99",
                          "name": f"Resident {i}"} for i in range(n)}
    members = {"area:A": sorted(subs)[:12], "area:B": sorted(subs)[12:]}
    undelivered = {s for s, v in subs.items() if v["phone"].endswith("99")}
    assert undelivered & set(members["area:A"]) and undelivered & set(members["area:B"])
    env.start_redis()
    seed(env.r, subs, members)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--callback-delay-ms", "20")
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": base},
                   providers={"twilio": {"status_callback": f"{base}/hooks/twilio"}})
    post_job(env.r, {"id": JOB_ID, "priority": "high", "audience": {"segments": list(SEGS)},
                     "channels": ["sms"], "message": {"sms": "Road closed for {{name}}."}})
    wait_job(env.r, JOB_ID, [d], timeout=60)
    key = f"{PREFIX}job:{JOB_ID}"
    wait_until(lambda: d.check_alive() or counter(env.r.hgetall(key), "delivered:sms")
               + counter(env.r.hgetall(key), "failed:sms") == n, 30, 0.05,
               what="every status callback to be applied")
    h = env.r.hgetall(key)
    assert counter(h, "delivered") == n - len(undelivered)
    receipts = [rc for _id, rc in stream_fields(env.r, f"{PREFIX}receipts")]
    hooked = [rc for rc in receipts if rc.get("source") == "webhook"]
    assert len(hooked) == n and all("sub" not in rc for rc in hooked), hooked[:2]

    def check(rows, err):
        for seg in SEGS:
            row = rows[seg]
            want_failed = len(undelivered & set(members[seg]))
            assert int(row["delivered"]) == len(members[seg]) - want_failed, (seg, row)
            assert int(row["delivered_sms"]) == int(row["delivered"]), (seg, row)
            assert int(row["failed"]) == want_failed, (seg, row)
            assert int(row["sent"]) == 0, (seg, row)
            assert int(row["residents_reached"]) == len(members[seg]) - want_failed, (seg, row)
        # the segments do not overlap: their figures add up to the job's counters
        for st in ("delivered", "failed", "sent", "messages"):
            assert sum(int(rows[s][st]) for s in SEGS) == counter(h, st), (st, rows)
            assert int(rows["total"][st]) == counter(h, st), (st, rows["total"])
        assert "warning" not in err, err

    check(*report(env))
    # tail names a webhook receipt's message by its audience position
    res = ctl(env, "tail", "--job", JOB_ID, "-n", str(2 * n))
    assert res.returncode == 0, res.stderr
    assert sum(1 for ln in res.stdout.splitlines() if " pos:" in ln) == n, res.stdout

    # crierd's own receipts trimmed from the stream (as MAXLEN does): the
    # webhook receipts alone are left, and crier:sms:last still names each
    # message's subscriber.
    own = [eid for eid, rc in stream_fields(env.r, f"{PREFIX}receipts")
           if rc.get("source") != "webhook"]
    assert own and env.r.xdel(f"{PREFIX}receipts", *own) == len(own)
    check(*report(env))

    # Without crier:sms:last either, the report cannot place them and says so.
    env.r.delete(f"{PREFIX}sms:last")
    rows, err = report(env)
    assert all(int(rows[s]["delivered"]) == 0 for s in SEGS), rows
    assert f"{n} provider receipts of job {JOB_ID}" in err, err
