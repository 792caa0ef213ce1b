"""Signed, scoped jobs over Redis: with intake.require_signed on, a job entry
carries `key`, `ts` and `sig` (v1=HMAC-SHA256(secret, ts "." job)). Every way
of getting it wrong ends in crier:jobs:dead with code `unauthorized` or
`forbidden` and a reason naming what failed, and nothing of it is sent; a good
one is sent once (also when its entry is replayed), records its key, and a key
with max_audience stops its job at the cap while the audience expands."""

import hashlib
import hmac
import json
import time

from harness import PREFIX, dead_entry, group_caught_up, seed, stream_fields, wait_job, wait_until

WEB_SECRET = "web-secret-0123456789abcdef"
CC_SECRET = "cc-secret-0123456789abcdef"

INTEGRATORS = {
    # a neighbourhood team's tool: its own areas, email and sms, not urgent
    "web": {"secret": WEB_SECRET, "segments": ["area:LE1*"], "channels": ["email", "sms"],
            "max_priority": "high", "max_audience": 100000},
    # command and control: everywhere and urgent, but at most 25 residents a job
    "cc": {"secret": CC_SECRET, "segments": ["*"], "subscribers": True,
           "max_priority": "urgent", "max_audience": 25, "may_schedule": True},
}


def sign(secret, ts, doc):
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + doc.encode(), hashlib.sha256)
    return "v1=" + mac.hexdigest()


def job(jid=None, segments=("area:LE1",), channels=("email",), **extra):
    d = {"priority": "normal", "audience": {"segments": list(segments)},
         "channels": list(channels),
         "message": {"subject": "Road closure", "text": "Hello {{name}}, the A6 is closed.",
                     "sms": "A6 closed.", "push": {"title": "A6", "body": "Closed"}}}
    if jid:
        d["id"] = jid
    d.update(extra)
    return json.dumps(d)


def post(r, fields):
    return r.xadd(f"{PREFIX}jobs", fields)


def signed(doc, key="web", secret=WEB_SECRET, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    return {"job": doc, "key": key, "ts": ts, "sig": sign(secret, ts, doc)}


def population(env):
    subs, segs = {}, {"area:LE1": [], "area:LE2": [], "area:BIG": []}
    for i in range(20):
        sid = f"a{i:03d}"
        subs[sid] = {"name": f"A {i}", "email": f"{sid}@mail.crier.test", "channels": "email"}
        segs["area:LE1"].append(sid)
    for i in range(20):
        sid = f"b{i:03d}"
        subs[sid] = {"name": f"B {i}", "email": f"{sid}@mail.crier.test", "channels": "email"}
        segs["area:LE2"].append(sid)
    for i in range(60):
        sid = f"c{i:03d}"
        subs[sid] = {"name": f"C {i}", "email": f"{sid}@mail.crier.test", "channels": "email"}
        segs["area:BIG"].append(sid)
    seed(env.r, subs, segs)
    return segs


def test_signed_and_scoped_jobs(env):
    env.start_redis()
    segs = population(env)
    env.start_sim()
    d = env.crierd(intake={"require_signed": True, "sig_window_s": 300},
                   integrators=INTEGRATORS,
                   fanout={"batch_size": 10, "max_batches": 8, "reclaim_idle_ms": 60000})
    now = int(time.time())
    good = job()  # no id: named by its signature, so a replay is the same job
    tampered = signed(job("tampered"))
    tampered["job"] = tampered["job"].replace("A6", "M1")
    cases = [
        # (what, fields, code, words in the reason)
        ("unsigned", {"job": job("unsigned-1")}, "unauthorized", "unsigned"),
        ("wrong key", signed(job("wrong-key"), key="nobody"), "unauthorized",
         "unknown key 'nobody'"),
        ("wrong secret", signed(job("wrong-secret"), secret="not-the-secret-at-all"),
         "unauthorized", "bad signature"),
        ("tampered", tampered, "unauthorized", "bad signature"),
        ("stale", signed(job("stale"), ts=now - 1000), "unauthorized", "stale timestamp"),
        ("future", signed(job("future"), ts=now + 1000), "unauthorized", "future timestamp"),
        ("no sig", {"job": job("no-sig"), "key": "web", "ts": str(now)}, "unauthorized",
         "sig: missing"),
        ("segment", signed(job("seg", segments=("area:LE1", "area:LE2"))), "forbidden",
         "audience.segments[1]: 'area:LE2'"),
        ("channel", signed(job("chan", channels=("email", "push"))), "forbidden",
         "'push' is not granted"),
        ("priority", signed(job("prio", priority="urgent")), "forbidden", "max_priority"),
        ("schedule", signed(job("sched", send_at="2099-01-01T00:00:00Z")), "forbidden",
         "may_schedule"),
        ("subscribers", signed(job("subs", audience={"segments": ["area:LE1"],
                                                     "subscribers": ["b000"]})),
         "forbidden", "scope subscribers"),
    ]
    entries = [(what, post(env.r, f), code, words) for what, f, code, words in cases]
    good_fields = signed(good)
    first = post(env.r, good_fields)
    replay = post(env.r, dict(good_fields))  # the same entry posted again
    capped = post(env.r, signed(job("capped", segments=("area:BIG",), priority="urgent"),
                                key="cc", secret=CC_SECRET))

    for what, entry, code, words in entries:
        f = wait_until(lambda e=entry: dead_entry(env.r, e), 20, what=f"{what} dead-lettered")
        assert f["code"] == code, (what, f)
        assert words in f["error"], (what, f["error"])

    good_id = "s-" + good_fields["sig"][3:35]
    h = wait_job(env.r, good_id, [d], timeout=30)
    assert h["key"] == "web"
    for e in (first, replay):
        wait_until(lambda e=e: group_caught_up(env.r, f"{PREFIX}jobs", e), 15,
                   what="both entries handled")
    events = [f for _i, f in stream_fields(env.r, f"{PREFIX}events") if f.get("job") == good_id]
    accepted = [f for f in events if f["event"] == "accepted"]
    dups = [f for f in events if f["event"] == "duplicate"]
    assert len(accepted) == 1 and accepted[0]["key"] == "web"
    assert len(dups) == 1  # whichever of the two entries came second
    assert {accepted[0]["entry"], dups[0]["entry"]} == {first, replay}

    hc = wait_job(env.r, "capped", [d], timeout=30)
    assert hc["key"] == "cc"
    assert int(hc["targeted"]) == 25
    assert int(hc["beyond_audience"]) == 35
    assert hc["code"] == "forbidden" and "max_audience" in hc["reason"]
    assert any(f.get("job") == "capped" and f["event"] == "forbidden"
               for _i, f in stream_fields(env.r, f"{PREFIX}events"))

    got = env.sim.recipients("sendgrid")
    le1 = {f"{s}@mail.crier.test" for s in segs["area:LE1"]}
    big = {f"{s}@mail.crier.test" for s in segs["area:BIG"]}
    assert le1 <= set(got)                       # the good job, once each
    assert all(got[a] == 1 for a in le1)
    assert len(set(got) & big) == 25             # the capped job: no one past the cap
    assert set(got) <= le1 | big                 # nothing of any refused job (LE2)
    assert env.sim.recipients("twilio") == {} and env.sim.recipients("fcm") == {}
    d.check_alive()


def test_unsigned_allowed_but_bad_signature_refused(env):
    """Without require_signed an unsigned job is taken as before, but a job
    that carries a signature must carry a good one."""
    env.start_redis()
    population(env)
    env.start_sim()
    d = env.crierd(integrators=INTEGRATORS)
    post(env.r, {"job": job("plain")})
    bad = post(env.r, signed(job("badsig"), secret="another-secret-0123456"))
    h = wait_job(env.r, "plain", [d], timeout=30)
    assert "key" not in h
    f = wait_until(lambda: dead_entry(env.r, bad), 20, what="bad signature dead-lettered")
    assert f["code"] == "unauthorized" and "bad signature" in f["error"]


def test_crierctl_send_signs(env, tmp_path):
    """crierctl send --key signs with the secret from a file or the
    environment; the job is accepted under that key."""
    import os
    import subprocess

    from harness import binary

    env.start_redis()
    population(env)
    env.start_sim()
    d = env.crierd(intake={"require_signed": True}, integrators=INTEGRATORS)
    path = tmp_path / "job.json"
    path.write_text(job("ctl-signed"))
    secret = tmp_path / "web.secret"
    secret.write_text(WEB_SECRET + "\n")
    base = [binary("crierctl"), "-p", str(env.redis.port), "send"]
    res = subprocess.run(base + ["--key", "web", "--secret-file", str(secret), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ctl-signed"
    assert wait_job(env.r, "ctl-signed", [d], timeout=30)["key"] == "web"

    path.write_text(job())  # no id: named after its signature
    res = subprocess.run(base + ["-k", "web", str(path)], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, CRIER_KEY_SECRET=WEB_SECRET))
    assert res.returncode == 0, res.stderr
    jid = res.stdout.strip()
    assert jid.startswith("s-") and wait_job(env.r, jid, [d], timeout=30)["key"] == "web"

    res = subprocess.run(base + ["-k", "web", str(path)], capture_output=True, text=True,
                         timeout=60, env={k: v for k, v in os.environ.items()
                                          if k != "CRIER_KEY_SECRET"})
    assert res.returncode != 0 and "CRIER_KEY_SECRET" in res.stderr
