"""Poisoned data never hangs a job: a Redis key of the wrong type ends the step
that meets it at once, in a stated final state, instead of the step being
retried for ever. A subscriber key that is not a hash is that resident's
outcome (`skipped`, code `bad_subscriber`) and the rest of the batch goes out;
an audience set or one of crier's own keys of the wrong type fails the job
(`state failed`, `error` naming the key and its type, event `failed`); a job
key that is not a hash sends the entry to crier:jobs:dead (code `bad_key`).

One table row per wrong type; every row runs against one redis-server,
crier-sim and crierd, with its own job id and key names, and must end within
seconds (the old behaviour retried the step about every 60 s)."""

import contextlib
import datetime
import subprocess
import time

import pytest

import harness
from harness import PREFIX, counter, post_job, seed, status_total, stream_fields, wait_until

DONE = 15  # seconds a case may take to reach its final state
# NOPERM makes crierd drop the connection and reconnect with backoff, so the
# five attempts of an ACL case take a few seconds more
ACL_DONE = 25


@pytest.fixture(scope="module")
def env():
    with harness.running_env("poisoned") as e:
        yield e


def good_residents(case, n=3):
    """n residents with an email address each, unique to the case."""
    return {f"{case}-ok{i}": {"name": f"Resident {i}", "email": f"{case}-ok{i}@mail.crier.test"}
            for i in range(n)}


def poison(r, key, kind):
    """Writes key as a value of type kind (string, list, set, zset, hash)."""
    r.delete(key)
    if kind == "string":
        r.set(key, "not what crier expects")
    elif kind == "list":
        r.rpush(key, "a", "b")
    elif kind == "set":
        r.sadd(key, "a", "b")
    elif kind == "zset":
        r.zadd(key, {"a": 1, "b": 2})
    elif kind == "hash":
        r.hset(key, mapping={"a": "1"})
    else:
        raise ValueError(kind)


def job_doc(case, audience, channels=("email",), **extra):
    doc = {"id": case, "priority": "normal", "audience": audience, "channels": list(channels),
           "message": {"subject": "Notice", "text": "Hello {{name}}.",
                       "sms": "Notice for {{name}}."}}
    doc.update(extra)
    return doc


def events_of(r, job_id):
    return [f for _id, f in stream_fields(r, f"{PREFIX}events") if f.get("job") == job_id]


def receipts_of(r, job_id):
    return [f for _id, f in stream_fields(r, f"{PREFIX}receipts") if f.get("job") == job_id]


def wait_state(env, job_id, states, what):
    def check():
        env.daemon.check_alive()
        h = env.r.hgetall(f"{PREFIX}job:{job_id}") if env.r.type(
            f"{PREFIX}job:{job_id}") == "hash" else {}
        return h if h.get("state") in states else None
    try:
        return wait_until(check, DONE, 0.05, what=what)
    except harness.HarnessError as e:
        raise harness.HarnessError(f"{e}; job hash now: "
                                   f"{env.r.hgetall(f'{PREFIX}job:{job_id}')}") from None


# ---- the cases ----------------------------------------------------------------
# Each setup(r, case) writes the case's data and returns (job document, the good
# residents' email addresses that must be reached, what the case expects).

def bad_subscriber(kind):
    def setup(r, case):
        good = good_residents(case)
        seed(r, good)
        bad = f"{case}-bad"
        poison(r, f"{PREFIX}sub:{bad}", kind)
        seg = f"{case}-area"
        r.sadd(f"{PREFIX}seg:{seg}", bad, *good)
        return (job_doc(case, {"segments": [seg]}), {g["email"] for g in good.values()},
                {"state": "completed", "skipped": {bad: "bad_subscriber"}})
    return setup


def bad_audience_set(role, kind):
    """An audience set (segment, require or exclude) of the wrong type."""
    def setup(r, case):
        good = good_residents(case)
        seed(r, good)
        seg = f"{case}-area"
        r.sadd(f"{PREFIX}seg:{seg}", *good)
        bad = f"{case}-{role}"
        poison(r, f"{PREFIX}seg:{bad}", kind)
        audience = {"segments": [seg]}
        if role == "segment":
            audience["segments"].append(bad)
        else:
            audience[role] = [bad]
        return (job_doc(case, audience), set(),
                {"state": "failed", "error": (f"{PREFIX}seg:{bad}", kind)})
    return setup


def bad_suppress_list(r, case):
    good = {f"{case}-r{i}": {"name": f"R {i}", "email": f"{case}-r{i}@mail.crier.test",
                             "phone": f"+4477009{i:05d}"} for i in range(3)}
    seed(r, good)
    poison(r, f"{PREFIX}suppress:sms", "string")
    return (job_doc(case, {"subscribers": list(good)}, channels=("email", "sms")),
            {g["email"] for g in good.values()},
            {"state": "completed", "failed_code": ("bad_suppress_list", 3),
             "cleanup": [f"{PREFIX}suppress:sms"]})


def bad_ledger(r, case):
    good = good_residents(case)
    seed(r, good)
    poison(r, f"{PREFIX}job:{case}:ledger", "hash")
    return (job_doc(case, {"subscribers": list(good)}), set(),
            {"state": "failed", "error": (f"{PREFIX}job:{case}:ledger", "hash")})


def bad_job_key(r, case):
    good = good_residents(case)
    seed(r, good)
    poison(r, f"{PREFIX}job:{case}", "string")
    return (job_doc(case, {"subscribers": list(good)}), set(),
            {"dead": ("bad_key", f"{PREFIX}job:{case}", "string")})


def bad_recent_index(r, case):
    good = good_residents(case)
    seed(r, good)
    poison(r, f"{PREFIX}jobs:recent", "string")
    return (job_doc(case, {"subscribers": list(good)}), set(),
            {"state": "failed", "error": (f"{PREFIX}jobs:recent", "string"),
             "cleanup": [f"{PREFIX}jobs:recent"]})


def segment_turns_bad_before_due(kind):
    """Accepted with a good segment, due a moment later when the segment is
    of the wrong type: the expansion meets it (not the accept script)."""
    def setup(r, case):
        good = good_residents(case)
        seed(r, good)
        seg = f"{case}-area"
        r.sadd(f"{PREFIX}seg:{seg}", *good)
        send_at = int(time.time() * 1000) + 1500
        doc = job_doc(case, {"segments": [seg]}, send_at=rfc3339(send_at))

        def after_accept(r2):
            wait_until(lambda: r2.hget(f"{PREFIX}job:{case}", "state") == "scheduled", DONE,
                       what=f"{case} scheduled")
            poison(r2, f"{PREFIX}seg:{seg}", kind)
        return (doc, set(), {"state": "failed", "error": (f"{PREFIX}seg:{seg}", kind),
                             "after_accept": after_accept})
    return setup


def require_turns_bad_before_due(r, case):
    good = good_residents(case)
    seed(r, good)
    seg, req = f"{case}-area", f"{case}-consent"
    r.sadd(f"{PREFIX}seg:{seg}", *good)
    r.sadd(f"{PREFIX}seg:{req}", *good)
    send_at = int(time.time() * 1000) + 1500
    doc = job_doc(case, {"segments": [seg], "require": [req]}, send_at=rfc3339(send_at))

    def after_accept(r2):
        wait_until(lambda: r2.hget(f"{PREFIX}job:{case}", "state") == "scheduled", DONE,
                   what=f"{case} scheduled")
        poison(r2, f"{PREFIX}seg:{req}", "zset")
    return (doc, set(), {"state": "failed", "error": (f"{PREFIX}seg:{req}", "zset"),
                         "after_accept": after_accept})


def quiet_now():
    """A quiet-hours window in UTC from two hours ago to two hours ahead."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=2), now + datetime.timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


def rfc3339(unix_ms):
    t = datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


CASES = [
    ("sub-string", bad_subscriber("string")),
    ("sub-list", bad_subscriber("list")),
    ("sub-set", bad_subscriber("set")),
    ("sub-zset", bad_subscriber("zset")),
    ("seg-list", bad_audience_set("segment", "list")),
    ("seg-string", bad_audience_set("segment", "string")),
    ("exclude-hash", bad_audience_set("exclude", "hash")),
    ("require-zset", bad_audience_set("require", "zset")),
    ("suppress-sms-string", bad_suppress_list),
    ("ledger-hash", bad_ledger),
    ("job-key-string", bad_job_key),
    ("recent-string", bad_recent_index),
    ("seg-list-at-due", segment_turns_bad_before_due("list")),
    ("require-zset-at-due", require_turns_bad_before_due),
]


@pytest.mark.parametrize("case,setup", CASES, ids=[c[0] for c in CASES])
def test_wrong_type_ends_in_a_final_state(env, case, setup):
    r = env.r
    case = f"poison-{case}"
    doc, reach, exp = setup(r, case)
    try:
        entry = post_job(r, doc)
        if "after_accept" in exp:
            exp["after_accept"](r)
        if "dead" in exp:
            code, key, kind = exp["dead"]

            f = wait_until(lambda: env.daemon.check_alive() or harness.dead_entry(r, entry),
                           DONE, 0.05, what=f"{case} dead-lettered")
            assert f["code"] == code
            assert key in f["error"] and f"is a {kind}" in f["error"], f["error"]
            assert r.type(key) == kind, "the key that was not crier's is left alone"
            ev = [e["event"] for e in events_of(r, case)]
            assert "rejected" in ev, ev
            wait_until(lambda: harness.group_caught_up(r, f"{PREFIX}jobs", entry), DONE,
                       what=f"{case} entry acknowledged")
            return

        h = wait_state(env, case, ("completed", "failed", "cancelled", "expired"),
                       f"{case} to end")
        assert h["state"] == exp["state"], h
        # Counters add up, whatever the final state.
        assert int(h.get("messages", -1)) == status_total(h), h
        if exp["state"] == "failed":
            key, kind = exp["error"]
            assert key in h["error"] and f"is a {kind}, not a" in h["error"], h["error"]
            failed = [e for e in events_of(r, case) if e["event"] == "failed"]
            assert len(failed) == 1 and failed[0]["error"] == h["error"], events_of(r, case)
            assert counter(h, "sent") == 0 and counter(h, "delivered") == 0, h
            assert not receipts_of(r, case), "a failed job sent nothing"
            st = subprocess.run([harness.binary("crierctl"), "-p", str(env.redis.port), "status",
                                 "--once", case], capture_output=True, text=True, timeout=30)
            assert f"error    {h['error']}" in st.stdout, st
        for sub, code in exp.get("skipped", {}).items():
            rc = [x for x in receipts_of(r, case) if x["sub"] == sub]
            assert [(x["status"], x["code"]) for x in rc] == [("skipped", code)], rc
            assert counter(h, "skipped") == len(exp["skipped"])
        if "failed_code" in exp:
            code, n = exp["failed_code"]
            rc = [x for x in receipts_of(r, case) if x["status"] == "failed"]
            assert [x["code"] for x in rc] == [code] * n, rc
            assert counter(h, "failed:sms") == n
        if reach:
            got = set(env.sim.recipients("sendgrid"))
            assert reach <= got, f"good residents not reached: {sorted(reach - got)}"
            assert counter(h, "sent:email") + counter(h, "delivered:email") == len(reach), h
        # Nothing of the job is left pending anywhere.
        wait_until(lambda: harness.group_caught_up(r, f"{PREFIX}jobs", entry), DONE,
                   what=f"{case} job entry acknowledged")
        for prio in ("urgent", "high", "normal", "bulk"):
            stream = f"{PREFIX}batches:{prio}"
            if r.exists(stream):
                wait_until(lambda s=stream: _nothing_pending(r, s), DONE,
                           what=f"{case}: {stream} has nothing pending")
    finally:
        for key in exp.get("cleanup", ()):
            r.delete(key)
    env.daemon.check_alive()


def _nothing_pending(r, stream):
    try:
        groups = r.xinfo_groups(stream)
    except Exception:  # noqa: BLE001 - no group yet
        return True
    return all(g["pending"] == 0 for g in groups)


def test_ledger_turns_bad_while_messages_are_out(env):
    """The ledger becomes a hash while the job's messages are at a slow
    provider: writing their outcomes meets it, the job fails with the reason
    and its batch is let go instead of being written again and again."""
    r, case = env.r, "poison-ledger-mid-job"
    subs = {f"{case}-{i}": {"name": f"R {i}", "phone": f"+4477008{i:05d}"} for i in range(10)}
    seed(r, subs)
    env.sim.configure("twilio", latency_ms=1500)
    try:
        entry = post_job(r, job_doc(case, {"subscribers": list(subs)}, channels=("sms",)))
        wait_until(lambda: env.sim.endpoint_stats("twilio")["requests"] > 0, DONE,
                   what="first SMS at the provider")
        poison(r, f"{PREFIX}job:{case}:ledger", "hash")
        h = wait_state(env, case, ("completed", "failed", "cancelled", "expired"),
                       f"{case} to end")
        assert h["state"] == "failed", h
        assert h["error"] == f"{PREFIX}job:{case}:ledger is a hash, not a string", h
        assert [e["event"] for e in events_of(r, case)].count("failed") == 1
        wait_until(lambda: harness.group_caught_up(r, f"{PREFIX}jobs", entry), DONE,
                   what="job entry acknowledged")
        wait_until(lambda: _nothing_pending(r, f"{PREFIX}batches:normal"), DONE,
                   what="its batch let go")
    finally:
        env.sim.configure("twilio", latency_ms=0)
    env.daemon.check_alive()
    # The daemon carries on with other work.
    good = good_residents("poison-after-ledger")
    seed(r, good)
    post_job(r, job_doc("poison-after-ledger", {"subscribers": list(good)}))
    h = wait_state(env, "poison-after-ledger", ("completed", "failed"), "next job to end")
    assert h["state"] == "completed", h


def test_parked_resident_turns_bad(env):
    """A message waiting out quiet hours in crier:retry whose subscriber key
    has become a string by the time it is due: that message fails with code
    bad_subscriber, and the job ends."""
    r, case = env.r, "poison-parked-sub"
    sub = f"{case}-r"
    seed(r, {sub: {"name": "Q", "email": f"{sub}@mail.crier.test", "quiet": quiet_now(),
                   "tz": "UTC"}})
    post_job(r, job_doc(case, {"subscribers": [sub]}))
    wait_until(lambda: counter(r.hgetall(f"{PREFIX}job:{case}"), "parked") == 1, DONE,
               what="message parked for quiet hours")
    poison(r, f"{PREFIX}sub:{sub}", "string")
    member = next(m for m in r.zrange(f"{PREFIX}retry", 0, -1) if m.startswith(f"{case}|"))
    r.zadd(f"{PREFIX}retry", {member: 0}, xx=True)  # due now
    h = wait_state(env, case, ("completed", "failed", "cancelled", "expired"), f"{case} to end")
    assert h["state"] == "completed", h
    assert counter(h, "failed") == 1 and int(h["messages"]) == status_total(h) == 1, h
    rc = [(x["status"], x["code"]) for x in receipts_of(r, case) if x["status"] != "park"]
    assert ("failed", "bad_subscriber") in rc, rc
    assert counter(h, "parked") == 0


@pytest.fixture
def own_env(request):
    """A redis-server, crier-sim and crierd of the test's own: an ACL test
    makes crierd's connections back off (NOPERM drops them), which must not
    slow the other cases."""
    with harness.running_env(request.node.name[:40]) as e:
        yield e


@contextlib.contextmanager
def acl_denied(env, patterns):
    """crierd's Redis user (default) may use only the keys matching patterns;
    yields a client of a user that may use every key, for the test's own work."""
    env.r.acl_setuser("poison-admin", enabled=True, passwords=["+poison-admin-pw"], keys=["*"],
                      commands=["+@all"], channels=["*"])
    admin = harness.redis.Redis(host="127.0.0.1", port=env.redis.port, username="poison-admin",
                                password="poison-admin-pw", decode_responses=True)
    admin.execute_command("ACL", "SETUSER", "default", "resetkeys", *patterns)
    try:
        yield admin
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "allkeys")
        admin.close()


def test_batch_that_keeps_failing_fails_its_job(own_env):
    """Loading a batch's subscribers fails the same way every time (crierd's
    Redis user may not read crier:sub:f*): the batch is tried a bounded number
    of times with doubling waits, then the job fails with the reason and the
    batch is let go."""
    env = own_env
    r, case = env.r, "poison-sub-noperm"
    subs = {"f-poison-1": {"name": "F", "email": "f-poison-1@mail.crier.test"},
            "g-poison-2": {"name": "G", "email": "g-poison-2@mail.crier.test"}}
    seed(r, subs)
    with acl_denied(env, ["~crier:[^s]*", "~crier:s[^u]*", "~crier:su[^b]*", "~crier:sub[^:]*",
                          "~crier:sub:[^f]*"]) as admin:
        entry = post_job(admin, job_doc(case, {"subscribers": list(subs)}))

        def ended():
            env.daemon.check_alive()
            h = admin.hgetall(f"{PREFIX}job:{case}")
            return h if h.get("state") in ("completed", "failed") else None
        h = wait_until(ended, ACL_DONE, 0.05, what=f"{case} to end")
        assert h["state"] == "failed", h
        assert h["error"].startswith("gave up after 5 attempts: loading subscribers failed "
                                     "(NOPERM"), h
        wait_until(lambda: harness.group_caught_up(admin, f"{PREFIX}jobs", entry), DONE,
                   what="job entry acknowledged")
        wait_until(lambda: _nothing_pending(admin, f"{PREFIX}batches:normal"), DONE,
                   what="its batch let go")
        log = env.daemon.log_text()
        tries = [ln for ln in log.splitlines() if case in ln and "of 5 failed" in ln]
        assert len(tries) == 4, tries


def test_step_that_keeps_failing_is_given_up(own_env):
    """A step that fails with the same Redis error every time (here: crierd's
    Redis user may not read the job's require set, an ACL mistake) is tried a bounded
    number of times with doubling waits, then the entry is dead-lettered with
    the reason, instead of being retried about every 60 s for ever."""
    env = own_env
    r, case = env.r, "poison-noperm"
    good = good_residents(case)
    seed(r, good)
    seg = "forbidden-consent"
    r.sadd(f"{PREFIX}seg:{seg}", *good)
    # crierd's user (default) may use every crier key but crier:seg:f*
    with acl_denied(env, ["~crier:[^s]*", "~crier:s[^e]*", "~crier:se[^g]*", "~crier:seg[^:]*",
                          "~crier:seg:[^f]*"]) as admin:
        started = time.time()
        entry = post_job(admin, job_doc(case, {"subscribers": list(good), "require": [seg]}))

        f = wait_until(lambda: env.daemon.check_alive() or harness.dead_entry(admin, entry),
                       ACL_DONE, 0.05, what=f"{case} given up")
        print(f"\ngiven up {time.time() - started:.1f} s after posting")
        assert f["code"] == "step_failed", f
        assert "gave up after 5 attempts" in f["error"] and "NOPERM" in f["error"], f
        wait_until(lambda: harness.group_caught_up(admin, f"{PREFIX}jobs", entry), DONE,
                   what="entry acknowledged")
        log = env.daemon.log_text()
        attempts = [ln for ln in log.splitlines() if case in ln and "of 5 failed" in ln]
        # failures 1-4 wait (doubling) and try again; the 5th gives up
        assert [a.split("next in ")[1] for a in attempts] == ["250 ms", "500 ms", "1000 ms",
                                                             "2000 ms"], attempts


def test_stored_document_no_longer_valid_fails_the_job(env):
    """A scheduled job whose stored document was damaged before it fell due
    fails at once with the reason (no retry can make it valid)."""
    r, case = env.r, "poison-bad-doc"
    good = good_residents(case)
    seed(r, good)
    send_at = int(time.time() * 1000) + 1500
    post_job(r, job_doc(case, {"subscribers": list(good)}, send_at=rfc3339(send_at)))
    wait_until(lambda: r.hget(f"{PREFIX}job:{case}", "state") == "scheduled", DONE,
               what="job scheduled")
    r.hset(f"{PREFIX}job:{case}", "doc", "{not json")
    h = wait_state(env, case, ("completed", "failed", "cancelled", "expired"), f"{case} to end")
    assert h["state"] == "failed", h
    assert h["error"].startswith("its stored document is no longer valid (not_json"), h
    assert [e["event"] for e in events_of(r, case)][-1] == "failed"
    assert not receipts_of(r, case)
