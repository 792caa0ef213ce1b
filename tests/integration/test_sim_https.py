"""crierd delivers to every HTTP provider API of crier-sim over HTTPS: the
simulator's --https-port serves SendGrid, Twilio, FCM and the SMS gateway over
TLS (HTTP/1.1), its APNs port HTTP/2 over TLS. The test makes its own CA and
gives crierd only https:// URLs with that CA as ca_file, so TLS verification
stays on throughout; what is asserted is what the simulator recorded."""

from certs import make_ca, make_ec_key, make_server_cert, public_key
from harness import Crierd, counter, crierd_config, post_job, seed, wait_job

TOPIC = "org.crier.test"
KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
GW_AUTH = "Bearer gw-test-key"


def https_sim(env):
    """redis, and crier-sim with its HTTPS and APNs listeners; returns
    (https base URL, APNs base URL, CA file, APNs .p8 key)."""
    d = env.dir
    ca, ca_key = make_ca(d / "ca")
    cert, key = make_server_cert(d / "ca", ca, ca_key)
    p8 = make_ec_key(d / "apns.p8")
    pub = public_key(p8, d / "apns.pub")
    env.start_redis()
    env.start_sim("--tls-cert", str(cert), "--tls-key", str(key),
                  "--https-port", "0", "--https-port-file", str(d / "https.port"),
                  "--apns-port", "0", "--apns-port-file", str(d / "apns.port"),
                  "--apns-key", str(pub), "--apns-team", TEAM_ID, "--apns-key-id", KEY_ID,
                  "--apns-topic", TOPIC)
    https = f"https://127.0.0.1:{int((d / 'https.port').read_text())}"
    apns = f"https://127.0.0.1:{int((d / 'apns.port').read_text())}"
    return https, apns, ca, p8


def config(env, https, ca, **over):
    cfg = crierd_config(env.redis.port, env.sim.port, **over)
    for p in cfg["providers"].values():
        p["url"] = https
        p["ca_file"] = str(ca)
    return cfg


def start(env, cfg, name):
    d = Crierd(env.dir, cfg, name=name)
    env.daemons.append(d)
    d.start()
    return d


def people(n, prefix, platform):
    return {f"{prefix}{i}": {"name": f"Resident {i}", "email": f"{prefix}{i}@mail.crier.test",
                             "phone": f"+4477008{i:05d}",
                             "push_token": (f"{i:02x}" * 32 if platform == "apns"
                                            else f"tok-{prefix}-{i}"),
                             "push_platform": platform}
            for i in range(n)}


def job(job_id, segment, channels):
    return {"id": job_id, "priority": "normal", "audience": {"segments": [segment]},
            "channels": list(channels),
            "message": {"subject": "Road closure", "text": "Hello {{name}}, the road is shut.",
                        "sms": "Road closure: the A6 is shut tonight.",
                        "push": {"title": "Road closure", "body": "The A6 is shut tonight."}}}


def recipients(env, endpoint):
    entries = env.sim.log_all(endpoint)
    assert entries and all(200 <= e["status"] < 300 for e in entries), entries[:3]
    return sorted(r for e in entries for r in e["recipients"])


def test_sendgrid_twilio_fcm_over_https(env):
    https, _apns, ca, _p8 = https_sim(env)
    d = start(env, config(env, https, ca), "crierd-https")
    subs = people(5, "h", "fcm")
    seed(env.r, subs, {"area:S": list(subs)})
    post_job(env.r, job("https-0001", "area:S", ("email", "sms", "push")))
    h = wait_job(env.r, "https-0001", [d], timeout=60)
    assert counter(h, "sent") == 15 and counter(h, "failed") == 0, h
    assert recipients(env, "sendgrid") == sorted(s["email"] for s in subs.values())
    assert recipients(env, "twilio") == sorted(s["phone"] for s in subs.values())
    assert recipients(env, "fcm") == sorted(s["push_token"] for s in subs.values())


def test_gateway_over_https_and_apns_over_http2(env):
    https, apns, ca, p8 = https_sim(env)
    cfg = config(env, https, ca, channels={"email": ["sendgrid"], "sms": ["gateway"],
                                           "push": ["apns"]})
    cfg["providers"]["gateway"] = {"type": "gateway", "url": https, "path": "/gateway/send",
                                   "auth_header": "Authorization", "auth_value": GW_AUTH,
                                   "from": "CrierAlerts", "ca_file": str(ca)}
    cfg["providers"]["apns"] = {"type": "apns", "url": apns, "key_id": KEY_ID,
                                "team_id": TEAM_ID, "private_key": f"$file:{p8}",
                                "topic": TOPIC, "ca_file": str(ca)}
    d = start(env, cfg, "crierd-https-2")
    subs = people(4, "g", "apns")
    seed(env.r, subs, {"area:G": list(subs)})
    post_job(env.r, job("https-0002", "area:G", ("sms", "push")))
    h = wait_job(env.r, "https-0002", [d], timeout=60)
    assert counter(h, "sent") == 8 and counter(h, "failed") == 0, h
    assert recipients(env, "gateway") == sorted(s["phone"] for s in subs.values())
    assert recipients(env, "apns") == sorted(s["push_token"] for s in subs.values())
    assert all(e["fields"]["alpn"] == "h2" for e in env.sim.log_all("apns"))
