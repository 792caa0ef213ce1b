"""A three-channel templated broadcast to 1,000 subscribers in overlapping area
segments: every expected (subscriber, channel) reaches the simulator exactly
once, and the job's counters and receipts account for every message."""

import json
import random
import urllib.parse

from harness import (CHANNELS, ENDPOINT, PREFIX, Expect, counter, make_population,
                     post_job, seed, status_total, stream_fields, wait_job)

JOB_ID = "appeal-bcast-0001"


def job_doc(segments, extra_ids):
    return {
        "id": JOB_ID,
        "priority": "urgent",
        "audience": {"segments": segments, "subscribers": extra_ids},
        "channels": ["email", "sms", "push"],
        "sender": {"name": "PC Jane Smith", "team": "City Centre NPT"},
        "message": {
            "lang": "en",
            "subject": "Police appeal: can you help, {{name}}?",
            "text": "Hello {{name}}, we are looking for a missing person. Call 101.",
            "html": "<p>Hello {{name}}, we are looking for a missing person.</p>",
            "sms": "Police appeal for {{name}}: missing person, call 101 quoting 123.",
            "push": {"title": "Police appeal",
                     "body": "{{name}}, can you help us find a missing person?"},
            "translations": {
                "pl": {"subject": "Apel policji: {{name}}",
                       "text": "Dzień dobry {{name}}, szukamy zaginionej osoby.",
                       "sms": "Apel policji do {{name}}: zaginiona osoba, tel. 101."},
            },
        },
    }


def entries_to(entries, address):
    return [e for e in entries if address in (e.get("recipients") or [])]


def test_broadcast_reaches_everyone_once(env):
    rng = random.Random(1001)
    subs, segs = make_population(1000, rng, areas=("area:A", "area:B", "area:C"), overlap=0.15)
    # Residents of an area the job does not target must not be reached.
    other, other_segs = make_population(100, rng, id_prefix="d", areas=("area:D",))
    subs.update(other)
    segs.update(other_segs)
    # A name that must be HTML-escaped in html and left alone elsewhere.
    subs["r000003"].update({"name": "Tom & Jerry <b>", "email": "tom@mail.crier.test",
                            "lang": "en"})
    subs["r000003"].pop("channels", None)
    extra = ["ghost-1", "r000005", "d000007"]  # no hash / already in a segment / in area:D

    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--log-body-bytes", "1048576")  # whole batched email requests
    d = env.crierd()

    audience = [s for a in ("area:A", "area:B", "area:C") for s in segs[a]] + extra
    exp = Expect(subs, audience, CHANNELS)
    assert len(exp.messages) > 1500 and exp.skipped  # the data covers the cases

    post_job(env.r, job_doc(["area:A", "area:B", "area:C"], extra))
    h = wait_job(env.r, JOB_ID, [d], timeout=90)

    # The simulator saw each expected address exactly once, and nothing else.
    stats = env.sim.stats()["endpoints"]
    for ch in CHANNELS:
        ep = ENDPOINT[ch]
        got = env.sim.recipients(ep)
        want = exp.addresses(ch)
        assert set(got) == want, (
            f"{ep}: missing {sorted(want - set(got))[:5]}, unexpected {sorted(set(got) - want)[:5]}")
        assert all(v == 1 for v in got.values()), \
            f"{ep}: sent more than once: {[k for k, v in got.items() if v != 1][:5]}"
        assert stats[ep]["duplicates"] == 0
        assert stats[ep]["recipients"] == len(want)
        assert stats[ep]["rejected"] == 0

    # The job's counters account for every message.
    assert int(h["messages"]) == exp.total
    assert int(h["targeted"]) == len(exp.audience)
    assert counter(h, "skipped") == len(exp.skipped)
    for bad in ("failed", "bounced", "suppressed", "expired", "cancelled"):
        assert counter(h, bad) == 0, f"{bad} = {h.get(bad)}"
    for ch in CHANNELS:
        ok = counter(h, f"sent:{ch}") + counter(h, f"delivered:{ch}")
        assert ok == exp.count(ch), f"{ch}: {ok} sent/delivered, expected {exp.count(ch)}"
    assert status_total(h) == exp.total
    assert int(h.get("completed_ms", 0)) >= int(h.get("created_ms", 0)) > 0

    # One receipt per message; one per (subscriber, channel) sent.
    assert env.r.xlen(f"{PREFIX}receipts") == exp.total
    seen = {}
    for _id, rc in stream_fields(env.r, f"{PREFIX}receipts"):
        assert rc["job"] == JOB_ID
        if rc.get("status") in ("sent", "delivered"):
            key = (rc["sub"], rc["channel"])
            seen[key] = seen.get(key, 0) + 1
            assert rc["provider"] == ENDPOINT[rc["channel"]]
    assert seen == {(s, c): 1 for s, c, _a in exp.messages}
    # SMS receipts carry what the message costs: its segments, summed on the job.
    sms = [rc for _id, rc in stream_fields(env.r, f"{PREFIX}receipts")
           if rc.get("channel") == "sms" and rc.get("status") in ("sent", "delivered")]
    assert sms and all(int(rc["segments"]) >= 1 for rc in sms)
    assert int(h["sms_segments"]) == sum(int(rc["segments"]) for rc in sms)

    events = [f["event"] for _id, f in stream_fields(env.r, f"{PREFIX}events")
              if f.get("job") == JOB_ID]
    assert events.index("accepted") < events.index("started") < events.index("completed")

    # The rendered templates arrived: per language, and HTML-escaped in html only.
    sms_log = env.sim.log_all("twilio")
    for lang, prefix in (("en", "Police appeal for "), ("pl", "Apel policji do ")):
        sid, _c, phone = next(m for m in exp.messages
                              if m[1] == "sms" and subs[m[0]]["lang"] == lang)
        (entry,) = entries_to(sms_log, phone)
        body = urllib.parse.parse_qs(entry["body"])["Body"][0]
        assert body.startswith(prefix + subs[sid]["name"] + ":"), body

    (mail,) = entries_to(env.sim.log_all("sendgrid"), "tom@mail.crier.test")
    doc = json.loads(mail["body"])
    (pers,) = [p for p in doc["personalizations"] if p["to"][0]["email"] == "tom@mail.crier.test"]

    def sub(s):  # SendGrid fills a batched request's tags from the personalization
        for tag, value in pers.get("substitutions", {}).items():
            s = s.replace(tag, value)
        return s
    parts = {c["type"]: sub(c["value"]) for c in doc["content"]}
    assert "Hello Tom & Jerry <b>," in parts["text/plain"]
    assert "Hello Tom &amp; Jerry &lt;b&gt;," in parts["text/html"]
    assert sub(doc["subject"]) == "Police appeal: can you help, Tom & Jerry <b>?"

    sid, _c, token = next(m for m in exp.messages
                          if m[1] == "push" and subs[m[0]]["lang"] == "en")
    (push,) = entries_to(env.sim.log_all("fcm"), token)
    note = json.loads(push["body"])["message"]["notification"]
    assert note["body"] == subs[sid]["name"] + ", can you help us find a missing person?"

    d.check_alive()
