"""How long push services keep an alert and how urgently they wake the phone,
as crier-sim receives it: APNs over HTTP/2 and TLS (apns-expiration,
apns-priority), FCM v1 (android.ttl and priority, no per-message collapse
key, the APNs headers FCM passes on to iPhones). A job without expires_at is
kept for the provider's default_ttl_s, never sent with apns-expiration 0."""

import datetime
import json
import time

from certs import make_ca, make_ec_key, make_server_cert, public_key
from harness import counter, post_job, seed, wait_job

TOPIC = "org.crier.test"
KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
TTL = 7200  # default_ttl_s configured for both providers

# (priority, apns-priority, android priority): high must not wait for the
# device's power budget; only bulk does.
PRIORITIES = [("urgent", "10", "high"), ("high", "10", "high"), ("normal", "10", "normal"),
              ("bulk", "5", "normal")]


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def post_jobs(env, prefix, platform, token):
    """One job per priority without an expiry and one with, each to its own
    resident; returns (expires_at unix seconds of the last job, the window of
    wall-clock seconds the sends happen in as (earliest, latest))."""
    subs = {}
    for i, (prio, _, _) in enumerate(PRIORITIES + [("high", None, None)]):
        subs[f"{prefix}{i}"] = {"push_token": token(i), "push_platform": platform}
    seed(env.r, subs, {f"{prefix}{i}": [f"{prefix}{i}"] for i in range(len(subs))})
    start = int(time.time())
    expires = start + 3 * 3600
    for i, (prio, _, _) in enumerate(PRIORITIES):
        post_job(env.r, {"id": f"{prefix}-{prio}", "priority": prio, "channels": ["push"],
                         "audience": {"segments": [f"{prefix}{i}"]},
                         "message": {"push": {"title": "Road closed", "body": "A487 closed"}}})
    post_job(env.r, {"id": f"{prefix}-expiring", "priority": "high", "channels": ["push"],
                     "audience": {"segments": [f"{prefix}{len(PRIORITIES)}"]},
                     "expires_at": iso(expires),
                     "message": {"push": {"title": "Road closed", "body": "A487 closed"}}})
    return expires, start


def wait_all(env, d, prefix):
    for prio, _, _ in PRIORITIES:
        h = wait_job(env.r, f"{prefix}-{prio}", [d], timeout=60)
        assert counter(h, "sent:push") == 1, h
    h = wait_job(env.r, f"{prefix}-expiring", [d], timeout=60)
    assert counter(h, "sent:push") == 1, h


def test_apns_expiry_and_priority(env):
    d = env.dir
    ca, ca_key = make_ca(d / "ca")
    cert, key = make_server_cert(d / "ca", ca, ca_key)
    p8 = make_ec_key(d / "apns.p8")
    pub = public_key(p8, d / "apns.pub")
    env.start_redis()
    env.start_sim("--tls-cert", str(cert), "--tls-key", str(key),
                  "--apns-port", "0", "--apns-port-file", str(d / "apns.port"),
                  "--apns-key", str(pub), "--apns-team", TEAM_ID, "--apns-key-id", KEY_ID,
                  "--apns-topic", TOPIC)
    port = int((d / "apns.port").read_text())
    daemon = env.crierd(
        channels={"email": ["sendgrid"], "sms": ["twilio"], "push": ["apns"]},
        providers={"apns": {"type": "apns", "url": f"https://127.0.0.1:{port}",
                            "key_id": KEY_ID, "team_id": TEAM_ID, "private_key": f"$file:{p8}",
                            "topic": TOPIC, "ca_file": str(ca), "default_ttl_s": TTL}})
    expires, start = post_jobs(env, "ap", "apns", lambda i: f"{i + 1:02x}" * 32)
    wait_all(env, daemon, "ap")
    end = int(time.time())

    by_token = {e["recipients"][0]: e for e in env.sim.log_all("apns")}
    assert len(by_token) == len(PRIORITIES) + 1, by_token.keys()
    for i, (prio, apns_prio, _) in enumerate(PRIORITIES):
        e = by_token[f"{i + 1:02x}" * 32]
        f = e["fields"]
        assert e["status"] == 200, e
        assert f["apns-priority"] == apns_prio, (prio, f)
        # no expires_at: kept default_ttl_s from when it was sent, never 0
        assert start + TTL <= int(f["apns-expiration"]) <= end + TTL, (prio, f, start, end)
        assert f["apns-collapse-id"] == f"ap-{prio}"
    f = by_token[f"{len(PRIORITIES) + 1:02x}" * 32]["fields"]
    assert f["apns-priority"] == "10"
    assert int(f["apns-expiration"]) == expires, f  # the job's own expiry


def test_fcm_ttl_priority_and_no_collapse_key(env):
    env.start_redis()
    env.start_sim()
    daemon = env.crierd(providers={"fcm": {"default_ttl_s": TTL}})
    expires, start = post_jobs(env, "fc", "fcm", lambda i: f"fcm-token-{i}")
    wait_all(env, daemon, "fc")
    end = int(time.time())

    by_job = {}
    for e in env.sim.log_all("fcm"):
        assert e["status"] == 200, e
        msg = json.loads(e["body"])["message"]
        by_job[msg["data"]["crier_job"]] = msg
    assert len(by_job) == len(PRIORITIES) + 1, by_job.keys()
    for prio, apns_prio, android_prio in PRIORITIES:
        msg = by_job[f"fc-{prio}"]
        android, headers = msg["android"], msg["apns"]["headers"]
        # FCM keeps four collapse keys per device: every alert is non-collapsible
        assert "collapse_key" not in android, android
        assert android["priority"] == android_prio, (prio, android)
        ttl = android["ttl"]
        assert ttl.endswith("s") and int(ttl[:-1]) == TTL, (prio, android)
        assert headers["apns-priority"] == apns_prio, (prio, headers)
        assert start + TTL <= int(headers["apns-expiration"]) <= end + TTL, (prio, headers)
        assert headers["apns-collapse-id"] == f"fc-{prio}"
    msg = by_job["fc-expiring"]
    ttl = int(msg["android"]["ttl"][:-1])
    assert expires - end - 1 <= ttl <= expires - start, (msg["android"], start, end, expires)
    assert int(msg["apns"]["headers"]["apns-expiration"]) == expires


def test_sim_fcm_checks_ttl_and_apns_headers(env):
    import urllib.error
    import urllib.request

    env.start_sim()
    url = f"{env.sim.url}/v1/projects/crier-demo/messages:send"

    def send(android=None, apns=None):
        msg = {"token": "tok-1", "notification": {"title": "t", "body": "b"}}
        if android is not None:
            msg["android"] = android
        if apns is not None:
            msg["apns"] = apns
        req = urllib.request.Request(url, data=json.dumps({"message": msg}).encode(),
                                     headers={"Authorization": "Bearer fcm-test-token",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["error"]["message"]

    assert send({"ttl": "3600s"}, {"headers": {"apns-expiration": "0"}}) == (200, None)
    assert send({"ttl": "0s"}) == (200, None)
    assert send({"ttl": "1.5s"}) == (200, None)
    for ttl in ("3600", 3600, "-1s", "2419201s", "1.0000000001s", "s"):
        assert send({"ttl": ttl}) == (400, "Invalid value at 'message.android.ttl'"), ttl
    assert send(None, {"headers": {"apns-priority": 10}}) == \
        (400, "Invalid value at 'message.apns.headers'")
