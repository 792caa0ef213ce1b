"""The messaging tier: a WhatsApp number may start conversations (a template
outside the 24-hour window) with only so many different residents in a moving
24 hours. With the provider's tier_limit crier keeps that count in Redis for
every crierd: exactly tier-many residents get the template, a resident with an
open window is not counted, and the rest end failed (tier_limit) when the job
expires before a place frees, or wait in the retry set until one does.
crier-sim plays the tier too (--wa-tier) and never answers its tier error."""

import json
import time
import urllib.parse

from harness import (PREFIX, check_config_file, counter, crierd_config, deep_merge, post_job,
                     seed, wait_job, wait_until)
from test_whatsapp import META_PHONE_ID, OPEN, twilio_wa_provider

OPTIN = "2026-01-01T00:00:00Z"


def residents(prefix, n_template, n_open):
    now_ms = int(time.time() * 1000)
    subs = {}
    for i in range(n_template):
        subs[f"{prefix}t{i}"] = {"name": f"T {i}", "whatsapp": f"+447700800{i:05d}",
                                 "whatsapp_optin": OPTIN}
    for i in range(n_open):
        subs[f"{prefix}o{i}"] = {"name": f"O {i}", "whatsapp": f"{OPEN}{i:05d}",
                                 "whatsapp_optin": OPTIN,
                                 "whatsapp_last_inbound": str(now_ms - 600 * 1000)}
    return subs


def job(job_id, segment, expires_in_s=None):
    doc = {"id": job_id, "priority": "high", "audience": {"segments": [segment]},
           "channels": ["whatsapp"],
           "message": {"whatsapp": {"template": "police_appeal", "language": "en_GB",
                                    "variables": {"1": "{{name}}"},
                                    "text": "Hello {{name}}, thank you for your message."}}}
    if expires_in_s:
        doc["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                          time.gmtime(time.time() + expires_in_s))
    return doc


def test_meta_tier_across_two_crierd_fails_the_excess_when_the_job_ends_first(env):
    tier = 5
    subs = residents("m", 12, 3)
    env.start_redis()
    seed(env.r, subs, {"area:TIER": list(subs)})
    env.start_sim("--wa-tier", str(tier))
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    conf = dict(channels={"whatsapp": ["meta"]},
                providers={"meta": {"type": "meta_whatsapp", "url": sim_url,
                                    "phone_number_id": META_PHONE_ID,
                                    "access_token": "meta-test-token",
                                    "tier_limit": tier, "max_inflight": 2}},
                fanout={"batch_size": 3})
    a = env.crierd("crierd-a", **conf)
    b = env.crierd("crierd-b", **conf)
    post_job(env.r, job("tier-meta", "area:TIER", expires_in_s=3600))
    h = wait_job(env.r, "tier-meta", [a, b], timeout=60)

    assert counter(h, "sent:whatsapp") == tier + 3, h
    assert counter(h, "failed") == 12 - tier, h
    assert counter(h, "reason:failed:tier_limit") == 12 - tier, h
    log = env.sim.log_all("meta")
    assert all(e["status"] == 200 for e in log), [e for e in log if e["status"] != 200]
    templates = {json.loads(e["body"])["to"] for e in log
                 if json.loads(e["body"])["type"] == "template"}
    assert len(templates) == tier
    texts = [e for e in log if json.loads(e["body"])["type"] == "text"]
    assert len(texts) == 3  # inside the window: not counted against the tier
    tier_set = env.r.zrange(f"{PREFIX}tier:meta", 0, -1)
    assert {"+" + t for t in templates} == set(tier_set)
    assert "messaging tier of 5 residents a day used up" in a.log_text() + b.log_text()


def test_twilio_tier_parks_the_excess_until_a_place_frees(env):
    tier = 3
    subs = residents("t", 7, 0)
    env.start_redis()
    seed(env.r, subs, {"area:TIER": list(subs)})
    env.start_sim("--wa-tier", str(tier))
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    prov = twilio_wa_provider(sim_url)
    prov["tier_limit"] = tier
    d = env.crierd(channels={"whatsapp": ["twilio_wa"]}, providers={"twilio_wa": prov})
    post_job(env.r, job("tier-tw", "area:TIER"))
    key = f"{PREFIX}job:tier-tw"

    def parked():
        return [m for m in env.r.zrange(f"{PREFIX}retry", 0, -1) if m.startswith("tier-tw|")]
    wait_until(lambda: d.check_alive() or (counter(env.r.hgetall(key), "sent:whatsapp") == tier
                                           and len(parked()) == 7 - tier),
               30, 0.05, what="tier-many sent and the rest parked")
    h = env.r.hgetall(key)
    assert h.get("state") != "completed" and counter(h, "failed") == 0, h
    now = time.time() * 1000
    for m in parked():
        due = env.r.zscore(f"{PREFIX}retry", m)
        assert due > now + 23 * 3600 * 1000, (m, due - now)
    log = [e for e in env.sim.log_all("twilio")
           if urllib.parse.parse_qs(e["body"])["To"][0].startswith("whatsapp:")]
    assert len(log) == tier and all(e["status"] == 201 for e in log), log
    assert env.r.zcard(f"{PREFIX}tier:twilio_wa") == tier


def test_sim_tier_refuses_the_excess_with_each_providers_code(env):
    """crier-sim's --wa-tier alone (crier without tier_limit): beyond the tier
    Meta answers 131048 and Twilio 63018, a template to a resident already
    reached in the 24 hours still goes, and crier, told to try once, fails the
    excess with the provider's code."""
    tier = 2
    subs = residents("s", 4, 0)
    env.start_redis()
    seed(env.r, subs, {"area:SIM": list(subs)})
    env.start_sim("--wa-tier", str(tier))
    sim_url = f"http://127.0.0.1:{env.sim.port}"
    d = env.crierd(channels={"whatsapp": ["meta"]},
                   providers={"meta": {"type": "meta_whatsapp", "url": sim_url,
                                       "phone_number_id": META_PHONE_ID,
                                       "access_token": "meta-test-token", "max_inflight": 1},
                              "twilio_wa": twilio_wa_provider(sim_url)},
                   retry={"max_attempts": 1, "base_ms": 50, "max_ms": 100})
    post_job(env.r, job("sim-tier-1", "area:SIM"))
    h = wait_job(env.r, "sim-tier-1", [d], timeout=30)
    assert counter(h, "sent:whatsapp") == tier and counter(h, "failed") == 4 - tier, h
    assert counter(h, "reason:failed:131048") == 4 - tier, h
    log = env.sim.log_all("meta")
    assert sorted(e["status"] for e in log) == [200] * tier + [400] * (4 - tier)
    reached = {json.loads(e["body"])["to"] for e in log if e["status"] == 200}

    # the same residents again: those reached in the 24 hours still get it
    post_job(env.r, job("sim-tier-2", "area:SIM"))
    h = wait_job(env.r, "sim-tier-2", [d], timeout=30)
    assert counter(h, "sent:whatsapp") == tier, h
    again = {json.loads(e["body"])["to"] for e in env.sim.log_all("meta")[len(log):]
             if e["status"] == 200}
    assert again == reached

    # Twilio's sender has a tier of its own: 63018 beyond it
    d.term()
    d2 = env.crierd("crierd-b", channels={"whatsapp": ["twilio_wa"]},
                    providers={"twilio_wa": dict(twilio_wa_provider(sim_url), max_inflight=1)},
                    retry={"max_attempts": 1, "base_ms": 50, "max_ms": 100})
    post_job(env.r, job("sim-tier-3", "area:SIM"))
    h = wait_job(env.r, "sim-tier-3", [d2], timeout=30)
    assert counter(h, "sent:whatsapp") == tier and counter(h, "reason:failed:63018") == 4 - tier, h


def test_tier_limit_config_mistakes(tmp_path):
    good = crierd_config(6379, 8080)
    for name, prov, want in (
            ("on-sms", {"twilio": {"tier_limit": 1000}},
             "providers.twilio.tier_limit: only a WhatsApp provider"),
            ("negative", {"twilio_wa": dict(twilio_wa_provider("http://127.0.0.1:9"),
                                            tier_limit=-1)},
             "providers.twilio_wa.tier_limit: must be an integer from 0")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(deep_merge(good, {"providers": prov})))
        rc, out = check_config_file(path)
        assert rc == 1 and want in out, out
    path = tmp_path / "good.json"
    path.write_text(json.dumps(deep_merge(good, {
        "providers": {"twilio_wa": dict(twilio_wa_provider("http://127.0.0.1:9"),
                                        tier_limit=2000)},
        "channels": {"whatsapp": ["twilio_wa"]}})))
    rc, out = check_config_file(path)
    assert rc == 0, out
