"""Every bad job document in tests/data/jobs (plus an oversized one and one that
is not JSON at all) is rejected to crier:jobs:dead with its code and a reason
naming the offending field; a good job posted after them still completes and
the daemon keeps running with nothing left pending."""

import json

import redis

from harness import (GROUP, PREFIX, REPO, Expect, counter, group_caught_up, post_job, seed,
                     stream_fields, wait_job, wait_until)

DATA = REPO / "tests" / "data" / "jobs"
DEAD_JOB_CAP = 64 * 1024
GOOD_ID = "good-after-bad-0001"


def load_cases():
    """(file name, expected code, expected path or None) from the cases list
    beside the documents: lines "<file> TAB <code> TAB <message>", '#' lines
    are comments and code "ok" marks a good document. The error must name the
    path the message starts with (the part before the first ': ')."""
    cases = []
    for path in sorted(p for p in DATA.glob("cases*") if p.is_file()):
        for raw in path.read_text().splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            cols = raw.split("\t") if "\t" in raw else raw.split(None, 2)
            cols = [c.strip() for c in cols]
            if len(cols) < 2 or cols[1] == "ok" or not (DATA / cols[0]).is_file():
                continue
            message = cols[2] if len(cols) > 2 else ""
            where = message.split(": ", 1)[0].strip() if ": " in message else None
            cases.append((cols[0], cols[1], where))
    return cases


def good_job(ids):
    return {"id": GOOD_ID, "priority": "high", "audience": {"subscribers": ids},
            "channels": ["sms"], "message": {"sms": "Road closed on {{street}} until 6pm."}}


def test_bad_jobs_are_rejected_and_daemon_carries_on(env):
    cases = load_cases()
    assert len(cases) >= 10, f"expected the bad job samples and their cases list in {DATA}"

    env.start_redis()
    subs = {f"g{i}": {"phone": f"+44770091{i:04d}", "street": "High Street"} for i in range(5)}
    seed(env.r, subs)
    env.start_sim()
    d = env.crierd()

    posted = []  # (entry id, label, code, where, original bytes)
    for name, code, where in cases:
        doc = (DATA / name).read_bytes()
        posted.append((post_job(env.r, doc), name, code, where, doc))

    big_text = "x" * 300000
    oversized = json.dumps({"id": "too-big-0001", "audience": {"segments": ["area:A"]},
                            "channels": ["sms"], "message": {"sms": "hi", "text": big_text}})
    posted.append((post_job(env.r, oversized), "generated oversized", "too_large", None,
                   oversized.encode()))
    garbage = b"this is not JSON at all {\x01\x02"
    posted.append((post_job(env.r, garbage), "generated garbage", "not_json", None, garbage))

    good_entry = post_job(env.r, good_job(sorted(subs)))
    h = wait_job(env.r, GOOD_ID, [d], timeout=60)

    raw = redis.Redis(host="127.0.0.1", port=env.redis.port)  # bytes: bad UTF-8 must survive
    dead_key = f"{PREFIX}jobs:dead"
    wait_until(lambda: raw.xlen(dead_key) >= len(posted), 30,
               what=f"{len(posted)} entries in {dead_key}")
    dead = {}
    for _id, f in raw.xrange(dead_key):
        fields = {k.decode(): v for k, v in f.items()}
        dead[fields["entry"].decode()] = fields
    assert len(dead) == len(posted) == raw.xlen(dead_key), "one dead entry per bad job"

    problems = []
    for entry, label, code, where, original in posted:
        f = dead.get(entry)
        if f is None:
            problems.append(f"{label}: no dead entry for stream entry {entry}")
            continue
        got_code = f["code"].decode()
        error = f["error"].decode(errors="replace")
        if got_code != code:
            problems.append(f"{label}: code {got_code!r}, expected {code!r} ({error})")
        if not error.strip():
            problems.append(f"{label}: empty error")
        if where and where not in error:
            problems.append(f"{label}: error {error!r} does not name {where!r}")
        kept = f["job"]
        if len(kept) > DEAD_JOB_CAP or not original.startswith(kept) \
                or len(kept) < min(len(original), DEAD_JOB_CAP):
            problems.append(f"{label}: dead 'job' is not the original cut to 64 KiB "
                            f"({len(kept)} of {len(original)} bytes)")
    assert not problems, "\n".join(problems)

    # The good job was sent normally after all of that.
    exp = Expect(subs, sorted(subs), ["sms"])
    assert int(h["messages"]) == exp.total == counter(h, "sent") + counter(h, "delivered")
    assert set(env.sim.recipients("twilio")) == exp.addresses("sms")
    assert env.sim.endpoint_stats("twilio")["requests"] == exp.total

    # Rejected jobs leave no job state behind, only their rejection.
    stray = [k for k in env.r.scan_iter(match=f"{PREFIX}job:*", count=1000)
             if not k.startswith(f"{PREFIX}job:{GOOD_ID}")]
    assert not stray, f"rejected jobs left keys: {stray[:5]}"
    rejected = [f for _id, f in stream_fields(env.r, f"{PREFIX}events")
                if f.get("event") == "rejected"]
    assert len(rejected) == len(posted), f"{len(rejected)} rejected events for {len(posted)} bad jobs"

    # Everything read from the intake stream was acknowledged; crierd is fine.
    wait_until(lambda: group_caught_up(env.r, f"{PREFIX}jobs", good_entry), 15,
               what="intake group to acknowledge every entry")
    assert env.r.xpending(f"{PREFIX}jobs", GROUP)["pending"] == 0
    d.check_alive()
