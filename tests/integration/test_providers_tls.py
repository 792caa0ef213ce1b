"""crierd against crier-sim's TLS providers: email over SMTP with STARTTLS and
AUTH, push over APNs (HTTP/2 + TLS, ES256 provider token), SMS over Twilio.
The test makes its own CA; the sim's certificate is signed by it and crierd is
given it as ca_file, so TLS verification stays on throughout."""

import json
import time

from certs import make_ca, make_ec_key, make_server_cert, public_key
from harness import counter, post_job, seed, status_total, wait_job, wait_until

TOPIC = "org.crier.test"
KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
SMTP_USER = "crier"
SMTP_PASS = "smtp-secret"
FROM = "alerts@crier.test"
SUBJECT = "Police appeal \u2013 witnesses sought"


def tls_env(env, other_ca=False):
    """Starts redis, crier-sim with APNs and SMTP on TLS, and crierd using
    them. other_ca: crierd trusts a CA that did not sign the sim's certificate."""
    d = env.dir
    ca, ca_key = make_ca(d / "ca")
    cert, key = make_server_cert(d / "ca", ca, ca_key)
    p8 = make_ec_key(d / "apns.p8")
    pub = public_key(p8, d / "apns.pub")
    trusted = make_ca(d / "other", name="someone else's CA")[0] if other_ca else ca
    env.start_redis()
    env.start_sim("--tls-cert", str(cert), "--tls-key", str(key),
                  "--apns-port", "0", "--apns-port-file", str(d / "apns.port"),
                  "--apns-key", str(pub), "--apns-team", TEAM_ID, "--apns-key-id", KEY_ID,
                  "--apns-topic", TOPIC,
                  "--smtp-port", "0", "--smtp-port-file", str(d / "smtp.port"),
                  "--smtp-user", SMTP_USER, "--smtp-pass", SMTP_PASS, "--smtp-require-tls")
    apns_port = int((d / "apns.port").read_text())
    smtp_port = int((d / "smtp.port").read_text())
    providers = {
        "smtp": {"type": "smtp", "url": f"smtp://127.0.0.1:{smtp_port}", "from_email": FROM,
                 "from_name": "Crier Alerts", "username": SMTP_USER, "password": SMTP_PASS,
                 "starttls": True, "ca_file": str(trusted)},
        "apns": {"type": "apns", "url": f"https://127.0.0.1:{apns_port}", "key_id": KEY_ID,
                 "team_id": TEAM_ID, "private_key": f"$file:{p8}", "topic": TOPIC,
                 "ca_file": str(trusted)},
    }
    return env.crierd(channels={"email": ["smtp"], "sms": ["twilio"], "push": ["apns"]},
                      providers=providers, links={"secret": "link-secret-for-tests-0123456789"},
                      retry={"max_attempts": 3, "base_ms": 50, "max_ms": 200})


def subscribers(n, prefix="t"):
    return {f"{prefix}{i}": {"name": f"Resident {i}", "email": f"{prefix}{i}@mail.crier.test",
                             "phone": f"+4477009{i:05d}",
                             "push_token": f"{i:02x}" * 32, "push_platform": "apns"}
            for i in range(n)}


def job(job_id, channels=("email", "sms", "push")):
    return {"id": job_id, "priority": "urgent", "audience": {"segments": ["area:T"]},
            "channels": list(channels),
            "message": {"subject": SUBJECT, "text": "Hello {{name}}, did you see anything?",
                        "html": "<p>Hello {{name}}, did you see anything?</p>",
                        "sms": "Police appeal: did you see anything? Call 101.",
                        "push": {"title": "Police appeal", "body": "Witnesses sought"}}}


def test_three_channels_over_tls(env):
    d = tls_env(env)
    subs = subscribers(3)
    seed(env.r, subs, {"area:T": list(subs)})
    post_job(env.r, job("tls-0001"))
    h = wait_job(env.r, "tls-0001", [d], timeout=60)
    assert counter(h, "sent") == 9, h
    assert counter(h, "failed") == 0, h

    mail = [e for e in env.sim.log_all("smtp") if e["method"] == "DATA"]
    assert sorted(e["recipients"][0] for e in mail) == sorted(s["email"] for s in subs.values())
    for e in mail:
        f = e["fields"]
        assert e["status"] == 250, e
        assert f["tls"] is True and f["auth_user"] == SMTP_USER
        assert f["mail_from"] == FROM
        assert FROM in f["from"] and e["recipients"][0] in f["to"]
        assert f["subject"] == SUBJECT, f
        assert f["subject_raw"].startswith("=?UTF-8?"), f  # RFC 2047 on the wire
        assert f["multipart_alternative"] is True, f
        assert "text/plain" in f["parts"] and "text/html" in f["parts"], f
        assert f["list_unsubscribe"] and f["list_unsubscribe"].startswith("<http"), f
        assert f["list_unsubscribe_post"] == "List-Unsubscribe=One-Click", f

    sms = env.sim.log_all("twilio")
    assert sorted(e["recipients"][0] for e in sms) == sorted(s["phone"] for s in subs.values())
    assert all(e["status"] == 201 for e in sms)

    push = env.sim.log_all("apns")
    assert sorted(e["recipients"][0] for e in push) == \
        sorted(s["push_token"] for s in subs.values())
    for e in push:
        f = e["fields"]
        assert e["status"] == 200, e
        assert e["path"] == "/3/device/" + e["recipients"][0]
        assert e["auth"].lower().startswith("bearer ")
        assert f["alpn"] == "h2"
        assert f["apns-topic"] == TOPIC
        assert f["apns-push-type"] == "alert"
        assert f["apns-priority"] == "10"  # urgent
        assert f["apns-collapse-id"] == "tls-0001"
        assert f["apns-expiration"] is not None and f["apns-expiration"].isdigit()
        assert f["apns-id"] is not None and f["response_apns_id"] == f["apns-id"]
        assert f["jwt_kid"] == KEY_ID
        body = json.loads(e["body"])
        assert body["aps"]["alert"]["title"] == "Police appeal"
        assert body["aps"]["alert"]["body"] == "Witnesses sought"


def test_apns_wrong_ca_fails_clearly(env):
    d = tls_env(env, other_ca=True)
    subs = subscribers(3, prefix="w")
    seed(env.r, subs, {"area:T": list(subs)})
    post_job(env.r, job("tls-0002", channels=("push",)))

    def cert_error():
        d.check_alive()
        return any("provider 'apns'" in line and "ssl certificate problem" in line.lower()
                   for line in d.log_text().splitlines())

    wait_until(cert_error, 30, 0.05, what="a certificate error for apns in crierd's log")
    # give the retries time to run their course (or the job to end)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        h = env.r.hgetall("crier:job:tls-0002")
        if h.get("state") == "completed" or status_total(h) >= len(subs):
            break
        time.sleep(0.1)
    h = env.r.hgetall("crier:job:tls-0002")
    assert counter(h, "sent") == 0, h
    assert counter(h, "sent:push") == 0, h
    stats = env.sim.endpoint_stats("apns")
    assert stats["requests"] == 0 and stats["accepted"] == 0, stats


def test_apns_provider_token_reused(env):
    d = tls_env(env)
    subs = subscribers(40, prefix="r")
    seed(env.r, subs, {"area:T": list(subs)})
    post_job(env.r, job("tls-0003", channels=("push",)))
    h = wait_job(env.r, "tls-0003", [d], timeout=60)
    assert counter(h, "sent:push") == 40, h
    push = env.sim.log_all("apns")
    assert len(push) == 40
    assert all(e["status"] == 200 for e in push)
    iats = {e["fields"]["jwt_iat"] for e in push}
    tokens = {e["auth"] for e in push}
    assert len(iats) == 1 and None not in iats, iats
    assert len(tokens) == 1, len(tokens)


def sim_only(env, *extra):
    """crier-sim with APNs and SMTP on TLS, no crierd; returns (ca, p8, apns, smtp)."""
    d = env.dir
    ca, ca_key = make_ca(d / "ca")
    cert, key = make_server_cert(d / "ca", ca, ca_key)
    p8 = make_ec_key(d / "apns.p8")
    env.start_sim("--tls-cert", str(cert), "--tls-key", str(key),
                  "--apns-port", "0", "--apns-port-file", str(d / "apns.port"),
                  "--apns-key", str(p8), "--apns-team", TEAM_ID, "--apns-key-id", KEY_ID,
                  "--apns-topic", TOPIC,
                  "--smtp-port", "0", "--smtp-port-file", str(d / "smtp.port"), *extra)
    return (ca, p8, int((d / "apns.port").read_text()), int((d / "smtp.port").read_text()))


def test_smtp_conversation(env):
    import smtplib
    import ssl

    ca, _, _, port = sim_only(env, "--smtp-user", SMTP_USER, "--smtp-pass", SMTP_PASS,
                              "--smtp-require-tls")
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        code, _ = s.ehlo("client.test")
        assert code == 250 and s.has_extn("starttls") and s.has_extn("pipelining")
        assert s.mail(FROM)[0] == 530                    # TLS first
        assert s.docmd("FROB")[0] == 502
        assert s.docmd("X" * 1200)[0] == 500             # line too long
        s.starttls(context=ssl.create_default_context(cafile=str(ca)))
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        assert s.mail(FROM)[0] == 530                    # AUTH first
        try:
            s.login(SMTP_USER, "wrong")
            raise AssertionError("wrong password accepted")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535
        s.login(SMTP_USER, SMTP_PASS)
        for n in range(2):  # several messages per connection
            assert s.mail(FROM)[0] == 250
            assert s.rcpt(f"ok{n}@mail.crier.test")[0] == 250
            assert s.rcpt("nobody@invalid.sim")[0] == 550
            assert s.rcpt("someone@busy.sim")[0] == 451
            msg = (f"From: {FROM}\r\nTo: ok{n}@mail.crier.test\r\n"
                   "Subject: =?UTF-8?Q?Stra=C3=9Fe_gesperrt?=\r\n\r\n.dot line\r\nbody\r\n")
            assert s.data(msg)[0] == 250
        assert s.rset()[0] == 250 and s.noop()[0] == 250
        assert s.docmd("DATA")[0] == 503
    finally:
        s.quit()
    log = env.sim.log_all("smtp")
    data = [e for e in log if e["method"] == "DATA"]
    assert [e["recipients"] for e in data] == [["ok0@mail.crier.test"], ["ok1@mail.crier.test"]]
    assert all(e["fields"]["subject"] == "Stra\u00dfe gesperrt" for e in data)
    assert all("\r\n.dot line\r\n" in e["body"] for e in data)  # dot-unstuffed once
    rcpt = [(e["status"], e["recipients"][0]) for e in log if e["method"] == "RCPT"]
    assert rcpt == [(550, "nobody@invalid.sim"), (451, "someone@busy.sim")] * 2
    st = env.sim.endpoint_stats("smtp")
    assert st["accepted"] == 2 and st["rejected"] == 2 and st["failed"] == 2, st


def test_apns_checks(env):
    import subprocess

    from certs import es256_jwt

    ca, p8, port, _ = sim_only(env)
    now = int(time.time())
    good = es256_jwt(p8, KEY_ID, TEAM_ID, now)
    other = make_ec_key(env.dir / "other.p8")
    hexed = "ab" * 32

    def push(token, jwt=good, topic=TOPIC, body='{"aps":{"alert":"x"}}', push_type="alert"):
        argv = ["curl", "-s", "--http2", "--cacert", str(ca), "-o", "-", "-w", "\n%{http_code}",
                "-H", f"apns-topic: {topic}", "-H", f"apns-push-type: {push_type}",
                "-H", f"authorization: bearer {jwt}", "--data-binary", body,
                f"https://127.0.0.1:{port}/3/device/{token}"]
        out = subprocess.run(argv, capture_output=True, timeout=20, check=True).stdout.decode()
        text, code = out.rsplit("\n", 1)
        return int(code), (json.loads(text)["reason"] if text else None)

    assert push(hexed) == (200, None)
    assert push("apns-device-1") == (200, None)
    assert push("unregistered-1") == (410, "Unregistered")
    assert push("nothex") == (400, "BadDeviceToken")
    assert push(hexed, topic="org.other") == (400, "BadTopic")
    assert push(hexed, body="") == (400, "PayloadEmpty")
    assert push(hexed, body='{"x":1}') == (400, "BadPayload")
    assert push(hexed, push_type="nonsense") == (400, "InvalidPushType")
    assert push(hexed, jwt=es256_jwt(other, KEY_ID, TEAM_ID, now)) == \
        (403, "InvalidProviderToken")
    assert push(hexed, jwt=es256_jwt(p8, "OTHERKEY00", TEAM_ID, now)) == \
        (403, "InvalidProviderToken")
    assert push(hexed, jwt=es256_jwt(p8, KEY_ID, TEAM_ID, now - 3700)) == \
        (403, "ExpiredProviderToken")
    env.sim.configure("apns", rate_429=1.0)
    assert push(hexed) == (429, "TooManyRequests")
    env.sim.configure("apns", rate_429=0, error_rate=1.0)
    assert push(hexed) == (503, "ServiceUnavailable")
    st = env.sim.endpoint_stats("apns")
    assert st["accepted"] == 2 and st["throttled"] == 1 and st["failed"] == 1, st
