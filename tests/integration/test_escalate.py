"""Escalation against real redis-server, crier-sim and crierd: an appeal
sent by push, then by SMS after a few seconds to the residents whose push
brought no delivery receipt (the app's acknowledgement through the signed
generic webhook, posted by crier-sim playing the app), checked against the simulator's own record: exactly those
residents, none twice; the same while crierd is killed around the step; and
no step message once the job was cancelled or expired before its step."""

import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import json
import random
import signal
import time

from harness import (PREFIX, free_port, job_hash, post_job, seed, stream_fields, wait_job,
                     wait_until)

GENERIC_SECRET = "generic-hook-secret"


def hooks_config(port):
    return {"http": {"listen": f"127.0.0.1:{port}"},
            "webhooks": {"public_url": f"http://127.0.0.1:{port}",
                         "generic_secret": GENERIC_SECRET, "window_s": 300}}


def population(n, rng):
    """n residents: most have a push token, most a phone; some take SMS only
    (no usable first channel: the step is their first message)."""
    subs = {}
    for i in range(n):
        sid = f"e{i:06d}"
        f = {"name": f"R{i}"}
        if rng.random() < 0.6:
            f["push_token"] = f"tok-{sid}"
            f["push_platform"] = "fcm"
        if rng.random() < 0.8:
            f["phone"] = f"+4477002{i:05d}"
        if rng.random() < 0.05:
            f["channels"] = "sms"
        subs[sid] = f
    return subs


def appeal(job_id, after_s, segment, **extra):
    job = {"id": job_id, "priority": "urgent", "channels": ["push"],
           "audience": {"segments": [segment]},
           "message": {"push": {"title": "Missing person", "body": "Have you seen ...?"},
                       "sms": "Police appeal: missing person. Call 101."},
           "escalate": [{"after_s": after_s, "to": ["sms"], "unless": "delivered"}]}
    job.update(extra)
    return job


def push_refs(sim):
    """crier_ref of every push the simulator accepted, with its token."""
    out = {}
    for e in sim.log_all("fcm"):
        if e["status"] != 200:
            continue
        msg = json.loads(e["body"])["message"]
        out[msg["data"]["crier_ref"]] = msg["token"]
    return out


class Acks:
    """The app's delivery acknowledgements: signed generic webhook receipts
    over a few keep-alive connections."""

    def __init__(self, port):
        self.port = port

    def _post(self, conn, doc):
        ts = str(int(time.time()))
        raw = json.dumps(doc).encode()
        mac = hmac.new(GENERIC_SECRET.encode(), ts.encode() + b"." + raw,
                       hashlib.sha256).hexdigest()
        conn.request("POST", "/hooks/generic", raw, {
            "Content-Type": "application/json", "X-Crier-Timestamp": ts,
            "X-Crier-Signature": "sha256=" + mac})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def _run(self, docs):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for d in docs:
                st = self._post(conn, d)
                if st != 200:
                    raise AssertionError(f"webhook answered {st} for {d}")
        finally:
            conn.close()

    def post_all(self, docs, workers=4):
        chunks = [docs[i::workers] for i in range(workers)]
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            for f in [ex.submit(self._run, c) for c in chunks]:
                f.result()


def sms_counts(sim):
    return sim.recipients("twilio")


def first_pass_done(r, job_id):
    h = job_hash(r, job_id)
    return h.get("expanded") == "1" and h.get("batches") == h.get("batches_done") and \
        int(h.get("batches", 0)) > 0


def expected_sms(subs, acked_tokens):
    """Residents the step must text: a phone, SMS allowed, and no push receipt."""
    out = set()
    for sid, f in subs.items():
        if "phone" not in f:
            continue
        if f.get("push_token") in acked_tokens and f.get("channels") != "sms":
            continue
        out.add(f["phone"])
    return out


def push_receipts(sim):
    """From the simulator's own log: token -> whether the sim (acting as the
    app) acknowledged delivery of the push it accepted for that token."""
    out = {}
    for e in sim.log_all("fcm"):
        if e["status"] != 200:
            continue
        out[e["recipients"][0]] = e["fields"]["receipt"] == "delivered"
    return out


def test_push_then_sms_unless_delivered(env):
    """crier-sim plays the app: it acknowledges 70% of the pushes it accepted
    through the signed generic webhook, never for tokens ending in 7; the SMS
    step goes to exactly the residents whose push the sim's log shows without
    a receipt (and those with no push at all)."""
    rng = random.Random(22)
    env.start_redis()
    port = free_port()
    env.start_sim("--generic-webhook-url", f"http://127.0.0.1:{port}/hooks/generic",
                  "--generic-webhook-secret", GENERIC_SECRET)
    env.sim.configure("fcm", deliver_rate=0.7, never_deliver="7")
    d = env.crierd(**hooks_config(port))
    n = 20000
    subs = population(n, rng)
    seed(env.r, subs, {"area:esc": list(subs)})
    post_job(env.r, appeal("esc-1", 12, "area:esc"))
    wait_until(lambda: first_pass_done(env.r, "esc-1"), 60, what="the push round")
    receipts = push_receipts(env.sim)
    acked = {tok for tok, ok in receipts.items() if ok}
    assert len(receipts) == sum(1 for f in subs.values()
                                if "push_token" in f and f.get("channels") != "sms")
    assert not any(t.endswith("7") for t in acked), "a never-deliver token was acknowledged"
    assert 0.6 < len(acked) / len(receipts) < 0.8, (len(acked), len(receipts))
    wait_until(lambda: int(job_hash(env.r, "esc-1").get("delivered:push", 0)) == len(acked),
               30, what="the simulator's acknowledgements to be counted")
    acks_done_ms = int(time.time() * 1000)
    h = wait_job(env.r, "esc-1", [d], timeout=90)
    assert int(h["step:1:ms"]) > acks_done_ms, "the step ran before the acks were in"
    got = sms_counts(env.sim)
    want = expected_sms(subs, acked)
    assert set(got) == want, (len(set(got) - want), len(want - set(got)))
    assert max(got.values()) == 1, "a resident was texted twice"
    assert int(h["sent:sms"]) + int(h.get("delivered:sms", 0)) == len(want)
    assert h["esc_step"] == "1" and h["esc_left"] == "0"
    events = [f["event"] for _i, f in stream_fields(env.r, f"{PREFIX}events")
              if f.get("job") == "esc-1"]
    assert events.index("escalated") < events.index("completed"), events


def test_sigkill_around_the_step(env):
    """crierd-a is killed as the step comes due and twice while its SMS go
    out; crierd-b runs throughout. Every resident without a receipt is texted,
    and no more than the killed process's max_unrecorded twice per kill."""
    rng = random.Random(7)
    env.start_redis()
    env.start_sim()
    env.sim.configure("twilio", latency_ms=20)
    port = free_port()
    # what a killed crierd held (claimed retries, batches) comes back after 3 s, as in test_crash
    limits = {"providers": {"twilio": {"max_inflight": 16, "max_unrecorded": 64}},
              "fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 3000}}
    d = env.crierd(**hooks_config(port), **limits)
    b = env.crierd(consumer="crierd-b", **limits)
    n = 4000
    subs = population(n, rng)
    seed(env.r, subs, {"area:kill": list(subs)})
    post_job(env.r, appeal("esc-kill", 4, "area:kill"))
    wait_until(lambda: first_pass_done(env.r, "esc-kill"), 60, what="the push round")
    refs = push_refs(env.sim)
    acked = {ref: tok for ref, tok in refs.items() if rng.random() < 0.5}
    Acks(port).post_all([{"ref": ref, "status": "delivered"} for ref in acked])
    due = int(env.r.zscore(f"{PREFIX}escalate", "esc-kill|1"))
    wait_until(lambda: time.time() * 1000 >= due - 100, 30, what="the step's time")
    kills = 0
    for sent_before in (0, 1, 400):
        wait_until(lambda: sum(sms_counts(env.sim).values()) >= sent_before, 30,
                   what=f"{sent_before} step messages")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        kills += 1
        d.start()
    h = wait_job(env.r, "esc-kill", [d, b], timeout=90)
    got = sms_counts(env.sim)
    want = expected_sms(subs, set(acked.values()))
    assert set(got) == want, (len(set(got) - want), len(want - set(got)))
    dup = sum(c - 1 for c in got.values())
    assert dup <= kills * 64, dup
    assert h["esc_left"] == "0" and h["esc_step"] == "1"
    assert int(h["sent:sms"]) == len(want)


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_cancel_and_expiry_before_the_step(env):
    env.start_redis()
    env.start_sim()
    d = env.crierd()
    subs = {f"c{i}": {"push_token": f"t{i}", "push_platform": "fcm", "phone": f"+44770030{i:04d}"}
            for i in range(50)}
    seed(env.r, subs, {"area:c": list(subs)})
    post_job(env.r, appeal("esc-cancel", 30, "area:c"))
    wait_until(lambda: first_pass_done(env.r, "esc-cancel"), 30, what="the push round")
    assert job_hash(env.r, "esc-cancel")["state"] == "sending"  # waiting for its step
    env.r.hset(f"{PREFIX}job:esc-cancel", "state", "cancelling")
    h = wait_job(env.r, "esc-cancel", [d], state="cancelled", timeout=10)
    assert h["esc_left"] == "0"
    # a job ended by the step runner keeps its keys only for the retention
    for k in ("", ":ledger"):
        assert env.r.ttl(f"{PREFIX}job:esc-cancel{k}") > 0, k

    post_job(env.r, appeal("esc-expire", 30, "area:c", expires_at=iso(time.time() + 3)))
    h = wait_job(env.r, "esc-expire", [d], state="expired", timeout=20)
    assert "esc_step" in h and h["esc_step"] == "0"
    assert int(h["sent:push"]) == 50
    assert sms_counts(env.sim) == {}
    assert env.r.zcard(f"{PREFIX}escalate") == 0
    for k in ("", ":ledger"):
        assert env.r.ttl(f"{PREFIX}job:esc-expire{k}") > 0, k


LINK_SECRET = "link-secret-for-tests-0123"


def test_sms_then_email_unless_confirmed(env):
    """Confirmations by link (from the SMS text), SMS reply and app
    acknowledgement, at random: the email step goes to exactly the residents
    who did none of them."""
    import re
    import urllib.parse
    import urllib.request

    rng = random.Random(5)
    env.start_redis()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--twilio-inbound-url", f"{base}/hooks/twilio")
    cfg = hooks_config(port)
    cfg["links"] = {"secret": LINK_SECRET, "allow_insecure_http": True}
    d = env.crierd(**cfg)
    subs = {}
    for i in range(1500):
        f = {"phone": f"+4477004{i:05d}", "push_token": f"ctok-{i}", "push_platform": "fcm"}
        if rng.random() < 0.9:
            f["email"] = f"c{i}@mail.crier.test"
        subs[f"c{i:05d}"] = f
    seed(env.r, subs, {"area:conf": list(subs)})
    job = {"id": "conf-1", "priority": "urgent", "channels": ["sms", "push"], "confirm": True,
           "audience": {"segments": ["area:conf"]},
           "message": {"subject": "Missing person", "text": "Have you seen ...?",
                       "sms": "Police appeal. Seen it? Reply YES or tap {{confirm_url}}",
                       "push": {"title": "Missing person", "body": "Have you seen ...?"}},
           "escalate": [{"after_s": 15, "to": ["email"], "unless": "confirmed"}]}
    post_job(env.r, job)
    wait_until(lambda: first_pass_done(env.r, "conf-1"), 60, what="the first round")

    by_phone = {}
    for e in env.sim.log_all("twilio"):
        form = dict(urllib.parse.parse_qsl(e["body"]))
        by_phone[form["To"]] = form["Body"]
    refs = {tok: ref for ref, tok in push_refs(env.sim).items()}
    confirmed, how = set(), {"link": 0, "sms": 0, "app": 0}
    acks = []
    for sid, f in subs.items():
        roll = rng.random()
        if roll < 0.12:
            url = re.search(r"http://\S+/c/\S+", by_phone[f["phone"]]).group(0)
            page = urllib.request.urlopen(url, timeout=10).read().decode()
            assert "<form method=\"post\">" in page
            assert urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"),
                                          timeout=10).status == 200
            how["link"] += 1
        elif roll < 0.24:
            answer = env.sim._call("POST", "/_sim/inbound",
                                   {"from": f["phone"], "body": rng.choice(["YES", "y", "Ok"])})
            assert answer["status"] == 200, answer
            how["sms"] += 1
        elif roll < 0.36:
            acks.append({"ref": refs[f["push_token"]], "status": "confirmed"})
            how["app"] += 1
        else:
            continue
        confirmed.add(sid)
    Acks(port).post_all(acks)
    # a second confirmation by the same resident counts nothing
    Acks(port).post_all(acks[:5])
    key = f"{PREFIX}job:conf-1"
    wait_until(lambda: int(env.r.hget(key, "confirmed") or 0) == len(confirmed), 20,
               what="every confirmation to be counted")
    h = wait_job(env.r, "conf-1", [d], timeout=60)
    assert int(h["confirmed:push"]) == how["app"]
    assert int(h["confirmed:sms"]) == how["link"] + how["sms"]
    assert int(h["confirmed_via:link"]) == how["link"]
    assert int(env.r.hget(f"{key}:confirmed:segments", "area:conf")) == how["link"] + how["sms"]
    got = env.sim.recipients("sendgrid")
    want = {f["email"] for sid, f in subs.items() if sid not in confirmed and "email" in f}
    assert set(got) == want, (len(set(got) - want), len(want - set(got)))
    assert max(got.values()) == 1
    # what an operator sees: crierctl status and the report's columns
    import csv
    import io
    import subprocess
    from harness import binary
    res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "status", "--once",
                          "conf-1"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert f"confirmed {len(confirmed)}  email 0  sms {how['link'] + how['sms']}  " \
           f"push {how['app']}" in res.stdout, res.stdout
    assert f"step 1  after 15s to email unless confirmed  ran " in res.stdout, res.stdout
    assert f"messages {len(want)}  sent {len(want)}" in res.stdout, res.stdout
    res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "report", "conf-1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {r["segment"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert int(rows["total"]["confirmed"]) == len(confirmed)
    assert int(rows["area:conf"]["confirmed"]) == how["link"] + how["sms"]
    assert int(rows["total"]["step1_messages"]) == len(want)
    assert int(rows["area:conf"]["step1_sent"]) == len(want)
