"""WhatsApp as a fourth channel against crier-sim playing Twilio and Meta's
Cloud API: a 20,000-resident job on whatsapp + sms where residents with an
open 24-hour window get free text, the rest the approved template, residents
without opt-in are skipped (no_consent) and numbers not on WhatsApp are
suppressed for the channel; every request is checked against the form fields
(Twilio) and JSON (Meta) the providers document; both webhooks' signatures are
checked, forged and replayed ones included; read receipts are counted."""

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import urllib.request
import urllib.error

from harness import PREFIX, counter, free_port, post_job, seed, wait_job, wait_until

TWILIO_SID = "AC00000000000000000000000000000000"
TWILIO_TOKEN = "test-token"
CONTENT_SID = "HX" + "0123456789abcdef" * 2
META_SECRET = "app-secret-for-tests"
META_VERIFY = "verify-me"
META_PHONE_ID = "106540352242922"
OPEN = "+4477009111"      # the sim's default --wa-open-prefix
UNKNOWN = "+4477009999"   # the sim's default --wa-unknown-prefix
TWILIO_FIELDS = {"To", "From", "Body", "ContentSid", "ContentVariables", "StatusCallback"}


def wa_job(job_id, segment):
    return {"id": job_id, "priority": "high", "audience": {"segments": [segment]},
            "channels": ["whatsapp", "sms"],
            "message": {"sms": "Police appeal: call 101 quoting 123.",
                        "whatsapp": {"template": "police_appeal", "language": "en_GB",
                                     "variables": {"1": "{{name}}"},
                                     "text": "Hello {{name}}, Sam is safe. Thank you."}}}


def population(n, prefix, segment):
    """Residents by i % 10: 0 no opt-in (WhatsApp only: skipped), 1 not a
    WhatsApp user, 2-3 an open window, the rest the template."""
    now_ms = int(time.time() * 1000)
    subs, kinds = {}, {}
    for i in range(n):
        sid = f"{prefix}{i:05d}"
        k = i % 10
        f = {"name": f"Resident {i}", "phone": f"+4474{i:09d}"}
        if k == 0:
            f.update(whatsapp=f"+447700800{i:05d}", channels="whatsapp")
            kinds[sid] = "no_consent"
        elif k == 1:
            f.update(whatsapp=f"{UNKNOWN}{i:05d}", whatsapp_optin="2026-01-01T00:00:00Z")
            kinds[sid] = "unknown"
        elif k in (2, 3):
            f.update(whatsapp=f"{OPEN}{i:05d}", whatsapp_optin="2026-01-01T00:00:00Z",
                     whatsapp_last_inbound=str(now_ms - 3600 * 1000))
            kinds[sid] = "open"
        else:
            f.update(whatsapp=f"+447700800{i:05d}", whatsapp_optin="2026-01-01T00:00:00Z")
            kinds[sid] = "template"
        subs[sid] = f
    return subs, kinds, {segment: list(subs)}


def twilio_wa_provider(sim_url, callback=None):
    p = {"type": "twilio_whatsapp", "url": sim_url, "account_sid": TWILIO_SID,
         "auth_token": TWILIO_TOKEN, "from": "+447700900000",
         "content_sids": {"police_appeal": CONTENT_SID}}
    if callback:
        p["status_callback"] = callback
    return p


def test_twenty_thousand_residents_on_whatsapp_and_sms(env):
    n = 20000
    subs, kinds, segs = population(n, "w", "area:WA")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim()
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    d = env.crierd(channels={"whatsapp": ["twilio_wa"], "sms": ["twilio"]},
                   providers={"twilio_wa": twilio_wa_provider(sim_url)},
                   fanout={"batch_size": 500})
    post_job(env.r, wa_job("wa-20k", "area:WA"))
    h = wait_job(env.r, "wa-20k", [d], timeout=80)

    count = {k: sum(1 for v in kinds.values() if v == k) for k in set(kinds.values())}
    assert counter(h, "skipped") == count["no_consent"], h
    assert counter(h, "reason:skipped:no_consent") == count["no_consent"]
    assert counter(h, "suppressed:whatsapp") == count["unknown"]
    assert counter(h, "sent:whatsapp") == count["open"] + count["template"]
    assert counter(h, "sent:sms") == n - count["no_consent"]
    assert counter(h, "failed") == 0
    unknown_numbers = {subs[s]["whatsapp"] for s, k in kinds.items() if k == "unknown"}
    assert env.r.smembers(f"{PREFIX}suppress:whatsapp") == unknown_numbers

    by_number = {}
    for e in env.sim.log_all("twilio"):
        form = urllib.parse.parse_qs(e["body"], keep_blank_values=True)
        if not form.get("To", [""])[0].startswith("whatsapp:"):
            continue
        assert set(form) <= TWILIO_FIELDS, set(form) - TWILIO_FIELDS
        assert all(len(v) == 1 for v in form.values()), form
        assert form["From"] == ["whatsapp:+447700900000"]
        if e["status"] == 201:
            by_number[form["To"][0][9:]] = {k: v[0] for k, v in form.items()}
    for sid, k in kinds.items():
        num = subs[sid]["whatsapp"]
        if k in ("no_consent", "unknown"):
            assert num not in by_number, (sid, k)
            continue
        req = by_number[num]
        if k == "open":
            assert req["Body"] == f"Hello {subs[sid]['name']}, Sam is safe. Thank you."
            assert "ContentSid" not in req and "ContentVariables" not in req
        else:
            assert "Body" not in req, req
            assert req["ContentSid"] == CONTENT_SID
            assert json.loads(req["ContentVariables"]) == {"1": subs[sid]["name"]}


def twilio_signature(url, params):
    data = url + "".join(k + v for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(),
                                     hashlib.sha1).digest()).decode()


def http(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def meta_post(base, body, secret=META_SECRET):
    raw = json.dumps(body).encode()
    sig = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return http(f"{base}/hooks/meta", raw, {"Content-Type": "application/json",
                                            "X-Hub-Signature-256": sig})


def test_meta_cloud_api_and_both_webhooks(env):
    n = 60
    subs, kinds, segs = population(n, "m", "area:META")
    env.start_redis()
    seed(env.r, subs, segs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--meta-webhook-url", f"{base}/hooks/meta", "--meta-app-secret", META_SECRET,
                  "--meta-mps", "15", "--callback-delay-ms", "10")
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, webhooks={"public_url": base},
                   channels={"whatsapp": ["meta"], "sms": ["twilio"]},
                   providers={"meta": {"type": "meta_whatsapp", "url": sim_url,
                                       "phone_number_id": META_PHONE_ID,
                                       "access_token": "meta-test-token",
                                       "app_secret": META_SECRET, "verify_token": META_VERIFY},
                              "twilio_wa": twilio_wa_provider(sim_url, f"{base}/hooks/twilio")})

    # Meta's verification handshake: the challenge only for the right token.
    q = "hub.mode=subscribe&hub.verify_token={}&hub.challenge=1158201444"
    assert http(f"{base}/hooks/meta?" + q.format(META_VERIFY)) == (200, "1158201444")
    assert http(f"{base}/hooks/meta?" + q.format("guess"))[0] == 403

    post_job(env.r, wa_job("wa-meta", "area:META"))
    wait_job(env.r, "wa-meta", [d], timeout=60)
    key = f"{PREFIX}job:wa-meta"
    reached = sum(1 for k in kinds.values() if k in ("open", "template"))
    # delivered and read statuses arrive signed; each read counted once
    wait_until(lambda: d.check_alive() or (counter(env.r.hgetall(key), "delivered:whatsapp") ==
                                           reached and
                                           counter(env.r.hgetall(key), "read:whatsapp") == reached),
               30, 0.05, what="every delivered and read status to be applied")
    h = env.r.hgetall(key)
    assert counter(h, "sent:whatsapp") == 0
    assert counter(h, "suppressed:whatsapp") == sum(1 for k in kinds.values() if k == "unknown")
    assert counter(h, "read") == reached

    # Every request is the Cloud API's documented JSON; the throughput limit
    # (15 a second) answered some with 130429 and crier sent them again.
    log = env.sim.log_all("meta")
    assert any(e["status"] == 429 for e in log), "the throughput knob never bit"
    sent = {}
    for e in log:
        doc = json.loads(e["body"])
        assert doc["messaging_product"] == "whatsapp" and doc["recipient_type"] == "individual"
        assert doc["to"].isdigit()
        assert set(doc) <= {"messaging_product", "recipient_type", "to", "type", "text",
                            "template", "biz_opaque_callback_data"}, doc
        if e["status"] == 200:
            sent["+" + doc["to"]] = doc
    for sid, k in kinds.items():
        doc = sent.get(subs[sid]["whatsapp"])
        if k in ("no_consent", "unknown"):
            assert doc is None
        elif k == "open":
            assert doc["type"] == "text" and "Sam is safe" in doc["text"]["body"]
        else:
            assert doc["type"] == "template"
            assert doc["template"]["name"] == "police_appeal"
            assert doc["template"]["language"]["code"] == "en_GB"
            assert doc["template"]["components"] == [
                {"type": "body", "parameters": [{"type": "text", "text": subs[sid]["name"]}]}]

    # A forged notification is refused; a replayed one changes nothing.
    calls = [c for c in env.sim._call("GET", "/_sim/callbacks") if c["kind"] == "meta_whatsapp"]
    assert calls and all(c["status"] == 200 for c in calls), calls[:3]
    before = env.r.hgetall(key)
    forged = json.loads(calls[-1]["body"])
    assert meta_post(base, forged, secret="not-the-secret")[0] == 403
    raw = calls[-1]["body"].encode()
    assert http(f"{base}/hooks/meta", raw, {"Content-Type": "application/json",
                                            "X-Hub-Signature-256": calls[-1]["headers"]["X-Hub-Signature-256"]}) \
        == (200, "replayed\n")
    assert env.r.hgetall(key) == before

    # An inbound STOP on WhatsApp: suppressed on whatsapp, not on sms; the
    # message opened the resident's window.
    sid = next(s for s, k in kinds.items() if k == "template")
    num = subs[sid]["whatsapp"]
    inbound = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [
            {"from": num[1:], "id": "wamid.IN-1", "timestamp": str(int(time.time())),
             "type": "text", "text": {"body": "STOP"}}]}}]}]}
    assert meta_post(base, inbound)[0] == 200
    assert env.r.sismember(f"{PREFIX}suppress:whatsapp", num)
    assert not env.r.sismember(f"{PREFIX}suppress:sms", num)
    assert int(env.r.hget(f"{PREFIX}sub:{sid}", "whatsapp_last_inbound")) > time.time() * 1000 - 60000


def test_twilio_whatsapp_callbacks_signed_forged_replayed_and_read(env):
    n = 30
    subs, kinds, segs = population(n, "t", "area:TW")
    env.start_redis()
    seed(env.r, subs, segs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--callback-delay-ms", "10", "--twilio-inbound-url", f"{base}/hooks/twilio")
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, webhooks={"public_url": base},
                   channels={"whatsapp": ["twilio_wa"], "sms": ["twilio"]},
                   providers={"twilio_wa": twilio_wa_provider(sim_url, f"{base}/hooks/twilio")})
    post_job(env.r, wa_job("wa-tw", "area:TW"))
    wait_job(env.r, "wa-tw", [d], timeout=60)
    key = f"{PREFIX}job:wa-tw"
    reached = sum(1 for k in kinds.values() if k in ("open", "template"))
    wait_until(lambda: d.check_alive() or counter(env.r.hgetall(key), "read:whatsapp") == reached,
               30, 0.05, what="every read status to be applied")
    h = env.r.hgetall(key)
    assert counter(h, "delivered:whatsapp") == reached
    assert counter(h, "sent:whatsapp") == 0

    calls = [c for c in env.sim._call("GET", "/_sim/callbacks")
             if c["kind"] == "twilio_status" and "whatsapp%3A" in c["body"]]
    assert len(calls) == 3 * reached and all(c["status"] == 200 for c in calls), calls[:3]
    before = env.r.hgetall(key)
    last = calls[-1]
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": last["headers"]["X-Twilio-Signature"]}
    assert http(last["url"], last["body"].encode(), headers) == (200, "replayed\n")
    params = {k: v[0] for k, v in urllib.parse.parse_qs(last["body"]).items()}
    params["MessageStatus"] = "failed"
    forged = urllib.parse.urlencode(params).encode()
    headers["X-Twilio-Signature"] = twilio_signature(last["url"], params)[:-4] + "AAA="
    assert http(last["url"], forged, headers)[0] == 403
    assert env.r.hgetall(key) == before

    # A resident replies on WhatsApp (Twilio's signed inbound message): a
    # reply on the whatsapp channel, the window opens; STOP suppresses the
    # WhatsApp number only.
    sid = next(s for s, k in kinds.items() if k == "template")
    num = subs[sid]["whatsapp"]
    env.r.hdel(f"{PREFIX}sub:{sid}", "whatsapp_last_inbound")
    answer = env.sim._call("POST", "/_sim/inbound", {"from": "whatsapp:" + num, "body": "Thanks",
                                                      "to": "whatsapp:+447700900000"})
    assert answer["status"] == 200, answer
    assert int(env.r.hget(f"{PREFIX}sub:{sid}", "whatsapp_last_inbound")) > time.time() * 1000 - 60000
    replies = [f for _id, f in env.r.xrange(f"{PREFIX}replies")]
    assert any(f.get("channel") == "whatsapp" and f.get("sub") == sid for f in replies), replies
    answer = env.sim._call("POST", "/_sim/inbound", {"from": "whatsapp:" + num, "body": "STOP",
                                                      "to": "whatsapp:+447700900000"})
    assert answer["status"] == 200, answer
    assert env.r.sismember(f"{PREFIX}suppress:whatsapp", num)
    assert env.r.scard(f"{PREFIX}suppress:sms") == 0


def test_escalation_reaches_non_whatsapp_numbers_by_sms(env):
    """A job on whatsapp that escalates to sms unless delivered: the residents
    whose number is not on WhatsApp (suppressed for the channel) get the SMS
    at the step; the ones Meta delivered to do not."""
    n = 40
    subs, kinds, segs = population(n, "e", "area:ESC")
    env.start_redis()
    seed(env.r, subs, segs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--meta-webhook-url", f"{base}/hooks/meta", "--meta-app-secret", META_SECRET,
                  "--callback-delay-ms", "5")
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, webhooks={"public_url": base},
                   channels={"whatsapp": ["meta"], "sms": ["twilio"]},
                   providers={"meta": {"type": "meta_whatsapp", "url": sim_url,
                                       "phone_number_id": META_PHONE_ID,
                                       "access_token": "meta-test-token",
                                       "app_secret": META_SECRET}})
    job = dict(wa_job("wa-esc", "area:ESC"), channels=["whatsapp"],
               escalate=[{"after_s": 2, "to": ["sms"], "unless": "delivered"}])
    post_job(env.r, job)
    key = f"{PREFIX}job:wa-esc"
    reached = sum(1 for k in kinds.values() if k in ("open", "template"))
    # the deliveries must be in before the step runs for the test to mean anything
    wait_until(lambda: d.check_alive() or
               counter(env.r.hgetall(key), "delivered:whatsapp") == reached,
               20, 0.02, what="the WhatsApp deliveries")
    wait_job(env.r, "wa-esc", [d], timeout=60)
    texted = set(env.sim.recipients("twilio"))
    unknown = {subs[s]["phone"] for s, k in kinds.items() if k == "unknown"}
    assert texted == unknown, (len(texted), len(unknown))
