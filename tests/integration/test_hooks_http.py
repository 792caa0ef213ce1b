"""crierd's HTTP side against real redis-server, crier-sim and crierd: signed
webhooks change counters once and rejected ones change nothing in Redis; STOP
suppresses the next job; survey answers by SMS and by signed link are tallied
per option and segment; unsubscribe links act for their own subscriber only;
/metrics passes promtool and agrees with the job counters."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse

import pytest
import redis

from harness import PREFIX, free_port, ledger_bit, post_job, seed, stream_fields, wait_job, wait_until

GENERIC_SECRET = "generic-hook-secret"
LINK_SECRET = "link-secret-for-tests-0123"
TWILIO_TOKEN = "test-token"


# ---- helpers ------------------------------------------------------------------

class Hooks:
    """crierd with the listener on a free port, and clients for its routes."""

    def __init__(self, env, workdir, max_body=8192, **over):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        self.key_pem = workdir / "sg.pem"
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                        "-out", str(self.key_pem)], check=True, capture_output=True)
        pub = subprocess.run(["openssl", "ec", "-in", str(self.key_pem), "-pubout"],
                             check=True, capture_output=True).stdout.decode()
        cfg = {
            "http": {"listen": f"127.0.0.1:{self.port}", "max_body_bytes": max_body,
                     "read_timeout_ms": 2000},
            "webhooks": {"public_url": self.base, "generic_secret": GENERIC_SECRET,
                         "sendgrid_public_key": pub, "window_s": 300},
            "links": {"secret": LINK_SECRET, "ttl_days": 30},
        }
        cfg.update(over)
        self.d = env.crierd(**cfg)

    def request(self, method, path, body=b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    # Twilio: HMAC-SHA1 over the full URL and the sorted parameters.
    def twilio_sig(self, path, params):
        data = self.base + path + "".join(k + v for k, v in sorted(params))
        mac = hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()
        return base64.b64encode(mac).decode()

    def twilio(self, path, params, sig=None, body=None):
        params = list(params.items()) if isinstance(params, dict) else params
        raw = body if body is not None else urllib.parse.urlencode(params).encode()
        return self.request("POST", path, raw, {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sig if sig is not None else self.twilio_sig(path, params)})

    # Generic: HMAC-SHA256(secret, ts "." body), hex.
    def generic(self, doc, ts=None, secret=GENERIC_SECRET, body=None):
        ts = str(int(time.time()) if ts is None else ts)
        raw = body if body is not None else json.dumps(doc).encode()
        mac = hmac.new(secret.encode(), ts.encode() + b"." + (json.dumps(doc).encode()
                                                            if doc is not None else raw),
                       hashlib.sha256).hexdigest()
        return self.request("POST", "/hooks/generic", raw, {
            "Content-Type": "application/json", "X-Crier-Timestamp": ts,
            "X-Crier-Signature": "sha256=" + mac})

    # SendGrid: ECDSA P-256 over SHA-256(ts + body), DER, base64 (openssl CLI).
    def sendgrid(self, events, ts=None, sign_body=None):
        ts = str(int(time.time()) if ts is None else ts)
        raw = json.dumps(events).encode()
        payload = self.dir / "sg-payload"
        payload.write_bytes(ts.encode() + (sign_body if sign_body is not None else raw))
        der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key_pem),
                              str(payload)], check=True, capture_output=True).stdout
        return self.request("POST", "/hooks/sendgrid", raw, {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(der).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts})

    def metrics(self):
        status, text = self.request("GET", "/metrics")
        assert status == 200
        return text


def snapshot(r):
    """Every key crier's HTTP side may touch, with its whole value (bytes:
    ledgers and receipt bitmaps are binary)."""
    kw = r.connection_pool.connection_kwargs
    r = redis.Redis(host=kw["host"], port=kw["port"], socket_timeout=30)
    out = {}
    for pattern in (f"{PREFIX}job:*", f"{PREFIX}suppress:*", f"{PREFIX}receipts",
                    f"{PREFIX}replies", f"{PREFIX}hook:*", f"{PREFIX}sms:last"):
        for key in r.scan_iter(match=pattern, count=1000):
            t = r.type(key).decode()
            if t == "string":
                out[key] = r.get(key)
            elif t == "hash":
                out[key] = r.hgetall(key)
            elif t == "set":
                out[key] = sorted(r.smembers(key))
            elif t == "stream":
                out[key] = r.xrange(key)
            else:
                out[key] = (t, r.dump(key))
    return out


def metric_values(text, name):
    """{labels string: value} of one metric family's samples."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name):]] = float(value)
    return out


def subscribers(n, prefix="s", area=None):
    subs = {}
    for i in range(n):
        sid = f"{prefix}{i}"
        subs[sid] = {"name": f"Resident {i}", "email": f"{sid}@mail.crier.test",
                     "phone": f"+4477009{i:05d}", "channels": "email,sms"}
    return subs


def sms_refs(env, job_id, subs):
    """{phone: ref} of a job sent to an explicit list: audience positions
    follow the list, and the ledger must have recorded each SMS."""
    out = {}
    ledger = f"{PREFIX}job:{job_id}:ledger"
    for i, (sid, f) in enumerate(subs.items()):
        assert env.r.getbit(ledger, ledger_bit(i, 1)) == 1, f"no SMS recorded at position {i}"
        out[f["phone"]] = f"{job_id}/{i}/sms"
    return out


def start(env, **over):
    env.start_redis()
    env.start_sim()
    return Hooks(env, env.dir, **over)


def run_job(env, h, job_id, subs, extra=None):
    job = {"id": job_id, "priority": "urgent", "audience": {"subscribers": subs},
           "channels": ["email", "sms"],
           "message": {"subject": "Road closure", "text": "Hello {{name}}. Stop: {{unsubscribe_url}}",
                       "sms": "Road closed. Reply STOP to stop."}}
    job.update(extra or {})
    post_job(env.r, job)
    return wait_job(env.r, job_id, [h.d], timeout=60)


# ---- listener, health, metrics -------------------------------------------------

def test_health_metrics_and_counters_agree(env):
    h = start(env)
    subs = subscribers(6)
    subs["s5"].pop("phone")
    seed(env.r, subs)
    assert h.request("GET", "/healthz") == (200, "ok\n")
    wait_until(lambda: h.request("GET", "/readyz")[0] == 200, 10, what="readyz")
    assert h.request("GET", "/nope")[0] == 404
    assert h.request("POST", "/healthz")[0] == 405
    job = run_job(env, h, "metrics-1", list(subs) + ["ghost"])

    text = h.metrics()
    # the message counters equal the job's own counters
    samples = metric_values(text, "crier_messages_total")
    by_status = {}
    for labels, v in samples.items():
        st = labels.split('status="')[1].split('"')[0]
        by_status[st] = by_status.get(st, 0) + v
    for st in ("delivered", "sent", "failed", "bounced", "suppressed", "expired", "cancelled",
               "skipped"):
        assert by_status.get(st, 0) == int(job.get(st, 0)), (st, by_status, job)
    assert sum(by_status.values()) == int(job["messages"])
    assert 'crier_redis_connected{conn="commands"} 1' in text
    assert 'crier_redis_connected{conn="urgent"} 1' in text
    assert "crier_provider_request_duration_seconds_count" in text

    promtool = find_promtool()
    if promtool is None:
        pytest.skip("promtool is missing and apt-get could not install Debian's prometheus "
                    "package: the exposition was not checked by promtool (all else passed)")
    res = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=30)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def find_promtool():
    """promtool, installing Debian's prometheus package once when it is
    missing and this runs as root; None when that is not possible."""
    path = shutil.which("promtool")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
                       capture_output=True, timeout=600,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        path = shutil.which("promtool")
    return path


# ---- Twilio: receipts, rejections, STOP -----------------------------------------

def test_twilio_receipts_and_rejections(env):
    h = start(env, max_body=4096)
    subs = subscribers(3)
    seed(env.r, subs)
    job = run_job(env, h, "tw-1", list(subs))
    assert int(job["sent:sms"]) == 3
    refs = sms_refs(env, "tw-1", subs)
    phone = subs["s0"]["phone"]
    path = "/hooks/twilio?" + urllib.parse.urlencode({"ref": refs[phone]})
    params = {"MessageSid": "SM0001", "MessageStatus": "delivered", "To": phone}

    before = snapshot(env.r)
    # wrong signature, a changed body, a stale signature of another URL
    assert h.twilio(path, params, sig="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")[0] == 403
    good = h.twilio_sig(path, list(params.items()))
    changed = dict(params, MessageStatus="failed")
    assert h.twilio(path, changed, sig=good)[0] == 403
    assert h.twilio("/hooks/twilio?ref=tw-1%2F1%2Fsms", params, sig=good)[0] == 403
    # malformed form, no signature, oversized body
    assert h.twilio(path, params, body=b"MessageSid=%zz")[0] == 400
    assert h.request("POST", path, b"MessageSid=SM1",
                     {"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
    assert h.twilio(path, {"MessageSid": "SM1", "Body": "x" * 5000})[0] == 413
    assert snapshot(env.r) == before, "a rejected request changed Redis"

    # the real one: delivered moves one count, once
    assert h.twilio(path, params)[0] == 200
    j = env.r.hgetall(f"{PREFIX}job:tw-1")
    assert int(j["delivered:sms"]) == 1 and int(j["sent:sms"]) == 2
    assert int(j["delivered"]) == 1
    hooks = [f for _, f in stream_fields(env.r, f"{PREFIX}receipts") if f.get("source") == "webhook"]
    assert len(hooks) == 1 and hooks[0]["status"] == "delivered" and hooks[0]["job"] == "tw-1"
    # replayed: 200, nothing changes
    after = snapshot(env.r)
    assert h.twilio(path, params)[0] == 200
    assert snapshot(env.r) == after
    # failed for another message
    p2 = "/hooks/twilio?" + urllib.parse.urlencode({"ref": refs[subs["s1"]["phone"]]})
    assert h.twilio(p2, {"MessageSid": "SM0002", "MessageStatus": "undelivered",
                         "ErrorCode": "30003"})[0] == 200
    j = env.r.hgetall(f"{PREFIX}job:tw-1")
    assert int(j["failed:sms"]) == 1 and int(j["sent:sms"]) == 1

    m = metric_values(h.metrics(), "crier_webhook_requests_total")
    assert m['{hook="twilio",outcome="accepted"}'] == 2
    assert m['{hook="twilio",outcome="replayed"}'] == 1
    assert m['{hook="twilio",outcome="bad_signature"}'] == 4
    assert m['{hook="twilio",outcome="malformed"}'] == 1
    assert m['{hook="twilio",outcome="too_large"}'] == 1
    assert "bad_signature" in h.d.log_text()


def test_stop_suppresses_and_next_job_skips(env):
    h = start(env)
    subs = subscribers(2)
    seed(env.r, subs)
    run_job(env, h, "stop-1", list(subs))
    phone = subs["s0"]["phone"]
    inbound = {"MessageSid": "SMin1", "From": phone, "To": "+447700900000", "Body": " Stop "}
    assert h.twilio("/hooks/twilio", inbound)[0] == 200
    assert env.r.sismember(f"{PREFIX}suppress:sms", phone)
    replies = [f for _, f in stream_fields(env.r, f"{PREFIX}replies")]
    assert replies[-1]["type"] == "optout" and replies[-1]["from"] == phone
    # a replay of the same inbound message changes nothing
    before = snapshot(env.r)
    assert h.twilio("/hooks/twilio", inbound)[0] == 200
    assert snapshot(env.r) == before

    sent_before = set(env.sim.recipients("twilio"))
    job = run_job(env, h, "stop-2", list(subs))
    assert int(job.get("suppressed:sms", 0)) == 1
    assert int(job.get("sent:sms", 0)) == 1
    assert env.sim.recipients("twilio").get(phone, 0) == 1  # only the first job's message
    assert phone in sent_before

    # START lifts it
    assert h.twilio("/hooks/twilio", dict(inbound, MessageSid="SMin2", Body="start"))[0] == 200
    assert not env.r.sismember(f"{PREFIX}suppress:sms", phone)


# ---- SendGrid and generic --------------------------------------------------------

def test_sendgrid_and_generic(env):
    h = start(env)
    subs = subscribers(3)
    seed(env.r, subs)
    run_job(env, h, "sg-1", list(subs))

    def ref(i, ch):  # audience positions follow the explicit list
        return f"sg-1/{i}/{ch}"

    events = [{"event": "delivered", "sg_event_id": "ev1", "crier_ref": ref(0, "email"),
               "email": subs["s0"]["email"]},
              {"event": "bounce", "type": "bounce", "sg_event_id": "ev2",
               "crier_ref": ref(1, "email"), "email": subs["s1"]["email"]},
              {"event": "open", "sg_event_id": "ev3", "email": subs["s2"]["email"]}]

    before = snapshot(env.r)
    assert h.sendgrid(events, sign_body=b"[]")[0] == 403                 # signature of another body
    assert h.sendgrid(events, ts=int(time.time()) - 3600)[0] == 403       # stale
    st, _ = h.request("POST", "/hooks/sendgrid", json.dumps(events).encode(),
                      {"Content-Type": "application/json"})
    assert st == 403                                                       # unsigned
    assert h.generic({"ref": ref(2, "sms"), "status": "delivered"}, secret="wrong")[0] == 403
    assert h.generic({"ref": ref(2, "sms"), "status": "delivered"},
                     ts=int(time.time()) - 1000)[0] == 403
    assert h.generic(None, body=b'{"ref": ')[0] == 400
    assert h.generic({"ref": "no-such-ref", "status": "delivered"})[0] == 400
    assert snapshot(env.r) == before, "a rejected request changed Redis"

    assert h.sendgrid(events)[0] == 200
    j = env.r.hgetall(f"{PREFIX}job:sg-1")
    assert int(j["delivered:email"]) == 1 and int(j["bounced:email"]) == 1
    assert int(j["sent:email"]) == 1
    assert env.r.sismember(f"{PREFIX}suppress:email", subs["s1"]["email"])  # hard bounce
    after = snapshot(env.r)
    assert h.sendgrid(events)[0] == 200                                     # replayed
    assert snapshot(env.r) == after

    assert h.generic({"ref": ref(2, "sms"), "status": "delivered", "event_id": "g1"})[0] == 200
    assert int(env.r.hget(f"{PREFIX}job:sg-1", "delivered:sms")) == 1
    after = snapshot(env.r)
    assert h.generic({"ref": ref(2, "sms"), "status": "delivered", "event_id": "g1"})[0] == 200
    assert snapshot(env.r) == after
    m = metric_values(h.metrics(), "crier_webhook_requests_total")
    assert m['{hook="sendgrid",outcome="stale"}'] == 1
    assert m['{hook="generic",outcome="malformed"}'] == 2


# ---- surveys and links ------------------------------------------------------------

def link_from(text, kind):
    for word in text.split():
        if f"/{kind}/" in word:
            return urllib.parse.urlsplit(word.strip(".,)")).path
    raise AssertionError(f"no /{kind}/ link in {text!r}")


def test_survey_by_sms_and_link_per_segment(env):
    h = start(env)
    subs = subscribers(4)
    seed(env.r, subs, {"area:A": ["s0", "s1"], "area:B": ["s2", "s3"]})
    job = {"id": "survey-1", "priority": "urgent",
           "audience": {"segments": ["area:A", "area:B"]}, "channels": ["email", "sms"],
           "message": {"subject": "Quick question", "text": "Answer here: {{survey_url}}",
                       "sms": "Do you feel safe? Reply 1 Yes, 2 No, 3 Not sure"},
           "survey": {"question": "Do you feel safe?", "options": ["Yes", "No", "Not sure"]}}
    post_job(env.r, job)
    wait_job(env.r, "survey-1", [h.d], timeout=60)
    # the job a number last got: written by the record script; filled in here
    # when this crierd does not write it yet
    for sid, f in subs.items():
        if not env.r.hexists(f"{PREFIX}sms:last", f["phone"]):
            env.r.hset(f"{PREFIX}sms:last", f["phone"], f"survey-1/0/{sid}")

    def sms(sid, body, msid):
        return h.twilio("/hooks/twilio", {"MessageSid": msid, "From": subs[sid]["phone"],
                                          "Body": body})[0]

    assert sms("s0", "1", "SMa") == 200
    assert sms("s0", "2", "SMb") == 200        # a second answer is a reply, not a second vote
    assert sms("s2", "not sure", "SMc") == 200
    assert sms("s3", "thanks!", "SMd") == 200  # a reply, no answer

    st, _ = h.request("GET", "/s/garbage")
    assert st == 403
    from_subs = {}
    for sid in subs:
        path = signed_path(h, "s", sid, "survey-1")
        from_subs[sid] = path
    st, page = h.request("GET", from_subs["s1"])
    assert st == 200 and "Do you feel safe?" in page and "Not sure" in page
    before = snapshot(env.r)
    tampered = from_subs["s1"][:-2] + ("AA" if not from_subs["s1"].endswith("AA") else "BB")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert h.request("POST", tampered, b"option=2", form)[0] == 403
    assert h.request("POST", from_subs["s1"], b"option=9", form)[0] == 400
    assert snapshot(env.r) == before
    assert h.request("POST", from_subs["s1"], b"option=2", form)[0] == 200
    assert h.request("POST", from_subs["s1"], b"option=1", form)[0] == 200   # counted once

    jk = f"{PREFIX}job:survey-1"
    assert env.r.hgetall(jk + ":survey") == {"1": "1", "2": "1", "3": "1"}
    assert env.r.hgetall(jk + ":survey:area:A") == {"1": "1", "2": "1"}
    assert env.r.hgetall(jk + ":survey:area:B") == {"3": "1"}
    j = env.r.hgetall(jk)
    assert int(j["survey_responses"]) == 3
    assert int(j["replies"]) == 4 and int(j["repliers"]) == 3
    assert env.r.hgetall(jk + ":replies:segments") == {"area:A": "1", "area:B": "2"}
    types = [f["type"] for _, f in stream_fields(env.r, f"{PREFIX}replies")]
    assert types.count("reply") == 4 and types.count("survey") == 2


def signed_path(h, kind, sub, arg, secret=LINK_SECRET, exp=None):
    """A link token made the way crierd makes them (for subscribers whose
    message text the test does not read)."""
    exp = exp or int(time.time()) + 86400

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    payload = f"1|{kind}|{sub}|{arg}|{exp}".encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"/{kind}/{b64(payload)}.{b64(mac)}"


def test_unsubscribe_links(env):
    h = start(env)
    subs = subscribers(2)
    seed(env.r, subs)
    run_job(env, h, "unsub-1", list(subs))
    # the link crierd put in s0's email (text and List-Unsubscribe)
    own = None
    for e in env.sim.log_all("sendgrid"):
        doc = json.loads(e["body"])
        for p in doc.get("personalizations", []):
            if p["to"][0]["email"] == subs["s0"]["email"]:
                text = json.dumps(doc)
                own = urllib.parse.urlsplit(
                    text[text.index(h.base + "/u/"):].split('"')[0].split(">")[0]
                    .split("\\")[0].split(" ")[0]).path
    assert own is not None, "no unsubscribe link in s0's email"
    assert own.startswith("/u/")
    before = snapshot(env.r)
    st, page = h.request("GET", own)
    assert st == 200 and "<form" in page and "One-Click" in page
    assert snapshot(env.r) == before, "GET changed something"
    # s0's token with s1 written into it: refused
    payload, mac = own[3:].split(".")
    forged_payload = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b"|s0|", b"|s1|")).rstrip(b"=").decode()
    assert h.request("POST", f"/u/{forged_payload}.{mac}", b"List-Unsubscribe=One-Click",
                     {"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
    assert h.request("POST", signed_path(h, "u", "s1", "email", exp=int(time.time()) - 10),
                     b"List-Unsubscribe=One-Click")[0] == 403          # expired
    assert h.request("POST", signed_path(h, "u", "s1", "email", secret="x" * 20),
                     b"List-Unsubscribe=One-Click")[0] == 403          # another secret
    assert snapshot(env.r) == before
    st, _ = h.request("POST", own, b"List-Unsubscribe=One-Click",
                      {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200
    assert env.r.smembers(f"{PREFIX}suppress:email") == {subs["s0"]["email"]}  # s1 untouched
    u = [f for _, f in stream_fields(env.r, f"{PREFIX}replies") if f["type"] == "unsubscribe"]
    assert len(u) == 1 and u[0]["sub"] == "s0" and u[0]["channel"] == "email"
