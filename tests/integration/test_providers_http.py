"""crierd against the HTTP providers as crier-sim serves them: SendGrid, Twilio,
the generic JSON SMS gateway (the channel's second provider, taking over when
Twilio fails) and FCM with a service account whose RS256 JWT the sim verifies
at its token endpoint. Checks the exact requests the sim recorded, that one
OAuth token serves a 1,000-message job, and the sim's own gateway and token
endpoint answers."""

import base64
import json
import subprocess
import time
import urllib.parse

from harness import (PREFIX, Crierd, counter, crierd_config, http_request, post_job, seed, stream_fields,
                     wait_job)

SID = "AC00000000000000000000000000000000"
GW_AUTH = "Bearer gw-test-key"
SA_EMAIL = "crier-sender@crier-demo.iam.gserviceaccount.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], capture_output=True, timeout=60, **kw)


def service_account(env):
    """A Google-style service account key file with a fresh RSA key; returns
    (path of the JSON file, path of the public key PEM)."""
    key, pub = env.dir / "sa.key", env.dir / "sa.pub"
    assert openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                   "-out", str(key)).returncode == 0
    assert openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub)).returncode == 0
    doc = {"type": "service_account", "project_id": "crier-demo",
           "private_key_id": "0123456789abcdef", "private_key": key.read_text(),
           "client_email": SA_EMAIL, "client_id": "100000000000000000001",
           "token_uri": "https://oauth2.googleapis.com/token"}
    path = env.dir / "fcm-service-account.json"
    path.write_text(json.dumps(doc))
    return path, key, pub


def http_config(env, sa_path):
    sim = env.sim.url
    cfg = crierd_config(env.redis.port, env.sim.port)
    cfg["providers"]["gateway"] = {"type": "gateway", "url": sim, "path": "/gateway/send",
                                   "auth_header": "Authorization", "auth_value": GW_AUTH,
                                   "from": "CrierAlerts"}
    cfg["providers"]["fcm"] = {"type": "fcm", "url": sim, "project_id": "crier-demo",
                               "service_account": f"$file:{sa_path}",
                               "token_url": f"{sim}/token"}
    cfg["channels"]["sms"] = ["twilio", "gateway"]
    return cfg


def b64url(data):
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def population(n, with_all=40):
    subs = {}
    for i in range(n):
        f = {"name": f"Resident {i}", "push_token": f"tok-{i:05d}", "push_platform": "fcm"}
        if i < with_all:
            f["email"] = f"r{i:05d}@mail.crier.test"
            f["phone"] = f"+4477009{i:05d}"
        subs[f"p{i:05d}"] = f
    return subs


def test_job_through_sendgrid_gateway_fcm_with_exact_requests(env):
    env.start_redis()
    subs = population(1000)
    seed(env.r, subs, {"area:H": list(subs)})
    sa_path, _key, pub = service_account(env)
    env.start_sim("--fcm-service-account", str(sa_path))
    env.sim.configure("twilio", error_rate=1.0)  # Twilio down: the gateway takes the SMS
    d = Crierd(env.dir, http_config(env, sa_path), name="crierd-a")
    env.daemons.append(d)
    d.start()

    job_id = "appeal-http-0001"
    post_job(env.r, {
        "id": job_id, "priority": "urgent", "audience": {"segments": ["area:H"]},
        "channels": ["email", "sms", "push"],
        "message": {"subject": "Police appeal", "text": "Hello {{name}}, call 101.",
                    "html": "<p>Hello {{name}}, call 101.</p>",
                    "sms": "Police appeal for {{name}}: call 101.",
                    "push": {"title": "Police appeal", "body": "{{name}}, can you help?"}},
    })
    h = wait_job(env.r, job_id, [d], timeout=120)
    assert counter(h, "sent:email") + counter(h, "delivered:email") == 40
    assert counter(h, "sent:sms") + counter(h, "delivered:sms") == 40
    assert counter(h, "sent:push") + counter(h, "delivered:push") == 1000
    for bad in ("failed", "bounced", "suppressed", "expired"):
        assert counter(h, bad) == 0, (bad, h)

    stats = env.sim.stats()["endpoints"]
    assert stats["oauth"]["requests"] == 1 and stats["oauth"]["accepted"] == 1, \
        "one token serves the whole job"
    assert stats["fcm"]["accepted"] == 1000 and stats["fcm"]["rejected"] == 0
    assert stats["gateway"]["accepted"] == 40 and stats["gateway"]["duplicates"] == 0
    assert stats["twilio"]["accepted"] == 0 and stats["twilio"]["failed"] >= 1
    assert set(env.sim.recipients("gateway")) == {subs[f"p{i:05d}"]["phone"] for i in range(40)}
    providers = {(f["channel"], f["provider"]) for _id, f in stream_fields(env.r, f"{PREFIX}receipts")
                 if f.get("status") in ("sent", "delivered")}
    assert providers == {("email", "sendgrid"), ("sms", "gateway"), ("push", "fcm")}

    # The token request: a JWT bearer grant whose RS256 signature verifies with
    # the service account's public key, with Google's claims.
    (tok,) = env.sim.log_all("oauth")
    assert (tok["method"], tok["path"], tok["status"]) == ("POST", "/token", 200)
    assert tok["content_type"].startswith("application/x-www-form-urlencoded")
    form = urllib.parse.parse_qs(tok["body"])
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    head, claims, sig = form["assertion"][0].split(".")
    assert b64url(head)["alg"] == "RS256"
    c = b64url(claims)
    assert c["iss"] == SA_EMAIL and FCM_SCOPE in c["scope"].split()
    assert c["aud"] == f"{env.sim.url}/token"
    assert 0 < c["exp"] - c["iat"] <= 3600 and c["exp"] > time.time()
    (env.dir / "jwt.data").write_bytes(f"{head}.{claims}".encode())
    (env.dir / "jwt.sig").write_bytes(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    res = openssl("dgst", "-sha256", "-verify", str(pub), "-signature",
                  str(env.dir / "jwt.sig"), str(env.dir / "jwt.data"))
    assert res.returncode == 0, res.stdout + res.stderr

    # FCM: the issued token, the device token, notification and crier_ref.
    push = {json.loads(e["body"])["message"]["token"]: e for e in env.sim.log_all("fcm")}
    e = push["tok-00007"]
    assert (e["method"], e["path"], e["status"]) == \
        ("POST", "/v1/projects/crier-demo/messages:send", 200)
    assert e["auth"].startswith("Bearer ya29.")
    assert len({x["auth"] for x in push.values()}) == 1
    assert e["content_type"].startswith("application/json")
    msg = json.loads(e["body"])["message"]
    assert msg["notification"] == {"title": "Police appeal", "body": "Resident 7, can you help?"}
    assert msg["data"]["crier_ref"].startswith(job_id + "/") and e["ref"] == msg["data"]["crier_ref"]

    # Gateway: configured auth header, JSON {to, from, text, reference}.
    gw = {x["recipients"][0]: x for x in env.sim.log_all("gateway")}
    e = gw[subs["p00003"]["phone"]]
    assert (e["method"], e["path"], e["status"]) == ("POST", "/gateway/send", 202)
    assert e["auth"] == GW_AUTH and e["content_type"].startswith("application/json")
    body = json.loads(e["body"])
    assert set(body) == {"to", "from", "text", "reference"}
    assert body["to"] == subs["p00003"]["phone"] and body["from"] == "CrierAlerts"
    assert body["text"] == "Police appeal for Resident 3: call 101."
    assert body["reference"].startswith(job_id + "/") and body["reference"].endswith("/sms")
    assert e["ref"] == body["reference"]

    # Twilio (every attempt answered 500): basic auth, the account's path, the form.
    e = env.sim.log_all("twilio")[0]
    assert (e["method"], e["path"], e["status"]) == \
        ("POST", f"/2010-04-01/Accounts/{SID}/Messages.json", 500)
    assert e["auth"] == "Basic " + base64.b64encode(f"{SID}:test-token".encode()).decode()
    assert e["content_type"].startswith("application/x-www-form-urlencoded")
    f = {k: v[0] for k, v in urllib.parse.parse_qs(e["body"]).items()}
    assert f["From"] == "+447700900000" and f["To"].startswith("+4477009")
    assert f["Body"].startswith("Police appeal for Resident ")

    # SendGrid: API key, personalization per resident with crier_ref.
    mails = env.sim.log_all("sendgrid")
    assert all(m["status"] == 202 for m in mails)
    m = mails[0]
    assert (m["method"], m["path"]) == ("POST", "/v3/mail/send")
    assert m["auth"] == "Bearer SG.test-key" and m["content_type"].startswith("application/json")
    doc = json.loads(m["body"])
    assert doc["from"]["email"] == "alerts@crier.test"
    p = doc["personalizations"][0]
    assert p["to"][0]["email"].endswith("@mail.crier.test")
    assert p["custom_args"]["crier_ref"].startswith(job_id + "/")
    assert {c["type"] for c in doc["content"]} == {"text/plain", "text/html"}
    d.check_alive()


# ---- the sim's own answers ------------------------------------------------

def call(url, body=b"", headers=None, method="POST"):
    return http_request(url, body, headers, method)


def gw(sim, doc, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers if headers is not None else {"Authorization": GW_AUTH})
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    status, hdrs, raw = call(f"{sim.url}/gateway/send", body, h)
    return status, hdrs, json.loads(raw) if raw else None


def test_gateway_answers(env):
    env.start_sim("--gateway-auth-header", "X-Api-Key", "--gateway-auth-value", "k-123")
    ok = {"to": "+447700900001", "from": "Crier", "text": "hi", "reference": "j/0/sms"}
    key = {"X-Api-Key": "k-123"}
    assert gw(env.sim, ok, {})[0] == 401
    assert gw(env.sim, ok, {"X-Api-Key": "wrong"})[0] == 401
    assert gw(env.sim, ok, {"Authorization": GW_AUTH})[0] == 401  # not the configured header
    status, _h, body = gw(env.sim, ok, key)
    assert status == 202 and body["status"] == "accepted" and body["id"].startswith("gw-")
    status, _h, body2 = gw(env.sim, dict(ok, to="+447700900002"), key)
    assert status == 202 and body2["id"] != body["id"]
    assert gw(env.sim, b"not json", key)[0] == 400
    status, _h, body = gw(env.sim, {"from": "Crier", "text": "hi"}, key)
    assert status == 400 and "to" in body["error"]
    assert gw(env.sim, {"to": "+447700900001"}, key)[0] == 400
    assert gw(env.sim, dict(ok, to="07700900001"), key)[0] == 422
    status, _h, body = gw(env.sim, dict(ok, to="+15005550004"), key)
    assert (status, body) == (410, {"error": "unsubscribed"})
    env.sim.configure("gateway", rate_429=1.0, retry_after=7)
    status, hdrs, _b = gw(env.sim, ok, key)
    assert status == 429 and hdrs["Retry-After"] == "7"
    env.sim.configure("gateway", rate_429=0.0, error_rate=1.0)
    assert gw(env.sim, ok, key)[0] == 503
    st = env.sim.endpoint_stats("gateway")
    assert (st["accepted"], st["throttled"], st["failed"]) == (2, 1, 1)
    entry = env.sim.log_all("gateway")[3]
    assert entry["auth"] == "k-123" and entry["ref"] == "j/0/sms"


def make_jwt(key, claims, header=None):
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    signing = enc(header or {"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
    res = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)],
                         input=signing.encode(), capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return signing + "." + base64.urlsafe_b64encode(res.stdout).rstrip(b"=").decode()


def test_token_endpoint_verifies_the_jwt_and_tokens_expire(env):
    sa_path, key, _pub = service_account(env)
    other = env.dir / "other.key"
    assert openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                   "-out", str(other)).returncode == 0
    env.start_sim("--fcm-service-account", str(sa_path), "--fcm-token-ttl", "2")
    now = int(time.time())
    good = {"iss": SA_EMAIL, "scope": FCM_SCOPE, "aud": f"{env.sim.url}/token",
            "iat": now, "exp": now + 3600}

    def token(jwt, grant="urn:ietf:params:oauth:grant-type:jwt-bearer"):
        body = urllib.parse.urlencode({"grant_type": grant, "assertion": jwt}).encode()
        status, _h, raw = call(f"{env.sim.url}/token", body,
                               {"Content-Type": "application/x-www-form-urlencoded"})
        return status, json.loads(raw)

    def send(tok):
        body = json.dumps({"message": {"token": "tok-1", "notification": {"title": "t"}}})
        return call(f"{env.sim.url}/v1/projects/crier-demo/messages:send", body.encode(),
                    {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})

    bad = [
        (make_jwt(other, good), "Signature"),
        (make_jwt(key, dict(good, iss="someone@else.iam.gserviceaccount.com")), "email"),
        (make_jwt(key, dict(good, scope="https://www.googleapis.com/auth/cloud-platform")),
         "scope"),
        (make_jwt(key, dict(good, aud="https://oauth2.googleapis.com/token")), "aud"),
        (make_jwt(key, dict(good, iat=now - 7200, exp=now - 3600)), "timeframe"),
        (make_jwt(key, dict(good, exp=now + 7200)), "1 hour"),
        (make_jwt(key, good, {"alg": "HS256", "typ": "JWT"}), "RS256"),
        ("not.a-jwt", "Invalid JWT"),
    ]
    for jwt, why in bad:
        status, body = token(jwt)
        assert status == 400 and body["error"] == "invalid_grant", body
        assert why in body["error_description"], (why, body)
    status, body = token(make_jwt(key, good), grant="client_credentials")
    assert status == 400 and body["error"] == "unsupported_grant_type"

    status, body = token(make_jwt(key, good))
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 2
    assert body["access_token"].startswith("ya29.")
    assert send(body["access_token"])[0] == 200
    assert send("fcm-test-token")[0] == 200  # --fcm-token is still accepted
    assert send("ya29.made-up")[0] == 401
    time.sleep(2.2)
    status, _h, raw = send(body["access_token"])
    assert status == 401 and json.loads(raw)["error"]["status"] == "UNAUTHENTICATED"
    st = env.sim.endpoint_stats("oauth")
    assert (st["requests"], st["accepted"], st["rejected"]) == (10, 1, 9)
